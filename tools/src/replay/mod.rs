//! Scenario replay: a line-based language that drives the `viommu` model
//! through its real register and invalidation-queue interfaces, without a
//! guest. The language and the report are specified in `docs/SCENARIOS.md`.
//!
//! - [`parser`]: text to a checked [`Scenario`];
//! - [`tables`]: the harness area and the root/context/PASID tables;
//! - [`descriptors`]: invalidation descriptors as written into the queue.

pub mod descriptors;
pub mod parser;
pub mod tables;

pub use parser::{ParseError, Scenario};
