//! stalewalk tools that need no KVM: the scenario replay language over the
//! `viommu` model (`stalewalk replay`).

pub mod replay;
pub mod trace;
pub use replay::replay_command;
