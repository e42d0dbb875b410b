/**
 * Constants for host memory and the IOMMU. Constants only.
 */

/**
 * The IOMMU translation granule: 4 KiB pages (Intel VT-d 3.x §3.6 first/second-level paging,
 * Arm SMMUv3 with a 4 KiB translation granule). IOVA mappings are made in these units.
 */
export const IOMMU_PAGE_SHIFT = 12;
export const IOMMU_PAGE_SIZE = 1 << IOMMU_PAGE_SHIFT;

/** IOMMU mapping permissions (Linux include/linux/iommu.h IOMMU_READ / IOMMU_WRITE). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
