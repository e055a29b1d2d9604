//! placeholder replaced by the viommu work
