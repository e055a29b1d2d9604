//! placeholder replaced by the boot work
fn main() {}
