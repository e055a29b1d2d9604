//! placeholder replaced by the tools work
