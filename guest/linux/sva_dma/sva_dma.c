// SPDX-License-Identifier: GPL-2.0
/*
 * sva_dma: Linux 6.12 driver for the stalewalk SVA DMA test device.
 *
 * The device (docs/DEVICES.md, "SVA DMA test device") does copy, fill,
 * compare, probe and ATS translation requests on addresses it translates
 * through the IOMMU, tagged with a PASID.  Opening /dev/sva_dmaN binds the
 * caller's mm to the device with iommu_sva_bind_device(), so every
 * operation of that file works on the caller's virtual addresses.  A
 * probe may name any address, kernel ones included: the device is meant
 * to behave like a buggy or hostile one, so that the IOMMU walks (and may
 * cache) kernel page-table entries.
 *
 * The driver keeps one descriptor ring per device, submits one operation
 * at a time and polls its completion record; a page request from the
 * device is answered by the IOMMU core's I/O page fault handling while it
 * waits.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bits.h>
#include <linux/capability.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/iopoll.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "sva_dma_uapi.h"

#define SVA_DMA_VENDOR		0x5357
#define SVA_DMA_DEVICE		0x5641
#define SVA_DMA_ID		0x53564131	/* "SVA1" */

/* BAR0 registers */
#define SVA_DMA_REG_ID			0x00
#define SVA_DMA_REG_MAX_RING_ENTRIES	0x04
#define SVA_DMA_REG_MAX_TRANSFER	0x08
#define SVA_DMA_REG_RING_BASE		0x10
#define SVA_DMA_REG_RING_ENTRIES	0x18
#define SVA_DMA_REG_CTRL		0x1c
#define SVA_DMA_REG_HEAD		0x20
#define SVA_DMA_REG_TAIL		0x24
#define SVA_DMA_REG_STATUS		0x28
#define SVA_DMA_REG_ERROR		0x2c
#define SVA_DMA_REG_OPS_COMPLETED	0x30
#define SVA_DMA_REG_OPS_FAILED		0x38
#define SVA_DMA_REG_PAGE_REQUESTS	0x40
#define SVA_DMA_REG_ATC_ENTRIES		0x50
#define SVA_DMA_REG_ATC_INVALIDATIONS	0x58

#define SVA_DMA_CTRL_ENABLE		BIT(0)
#define SVA_DMA_STATUS_ENABLED		BIT(0)
#define SVA_DMA_STATUS_WAITING		BIT(1)
#define SVA_DMA_STATUS_HALTED		BIT(2)

/* Descriptor opcodes and flags */
#define SVA_DMA_OP_COPY			1
#define SVA_DMA_OP_FILL			2
#define SVA_DMA_OP_COMPARE		3
#define SVA_DMA_OP_PROBE		4
#define SVA_DMA_OP_ATS_TRANSLATE	5

#define SVA_DMA_DESC_PASID		BIT(0)
#define SVA_DMA_DESC_PRIV		BIT(1)
#define SVA_DMA_DESC_WRITE		BIT(3)

/* Ring slots: one operation is in flight at a time, a few are plenty. */
#define SVA_DMA_RING_ENTRIES		64
/* Long enough for a page request to be served under an emulated CPU. */
#define SVA_DMA_TIMEOUT_US		(10 * USEC_PER_SEC)
#define SVA_DMA_POLL_US			20

struct sva_dma_desc {
	u8 opcode;
	u8 flags;
	__le16 rsvd0;
	__le32 pasid;
	__le64 addr_a;
	__le64 addr_b;
	__le64 len;
	__le64 pattern;
	__le64 rsvd1;
	u8 status;
	u8 fault_reason;
	__le16 cflags;
	__le32 rsvd2;
	__le64 result;
};
static_assert(sizeof(struct sva_dma_desc) == 64);

struct sva_dma_dev {
	struct kref kref;
	struct pci_dev *pdev;
	void __iomem *regs;
	struct sva_dma_desc *ring;
	dma_addr_t ring_dma;
	u32 tail;
	u32 max_transfer;
	bool iopf;
	bool gone;		/* removed; under lock */
	struct mutex lock;	/* ring, tail, gone, files, each file's sva */
	struct list_head files;	/* open files, so remove can unbind them */
	struct miscdevice misc;
	int index;
	char name[16];
};

struct sva_dma_file {
	struct sva_dma_dev *sdev;
	struct list_head node;	/* in sdev->files */
	struct iommu_sva *sva;	/* NULL once the device is removed */
	struct mm_struct *mm;	/* the bound address space (the bond holds it) */
	u32 pasid;
};

static DEFINE_IDA(sva_dma_ida);

static void sva_dma_dev_free(struct kref *kref)
{
	struct sva_dma_dev *sdev = container_of(kref, struct sva_dma_dev, kref);

	ida_free(&sva_dma_ida, sdev->index);
	kfree(sdev);
}

/* Restart the ring (empty, HEAD = TAIL = 0); false if it did not enable. */
static bool sva_dma_ring_start(struct sva_dma_dev *sdev)
{
	writel(0, sdev->regs + SVA_DMA_REG_CTRL);
	writel(0, sdev->regs + SVA_DMA_REG_ERROR);
	memset(sdev->ring, 0, SVA_DMA_RING_ENTRIES * sizeof(*sdev->ring));
	writeq(sdev->ring_dma, sdev->regs + SVA_DMA_REG_RING_BASE);
	writel(SVA_DMA_RING_ENTRIES, sdev->regs + SVA_DMA_REG_RING_ENTRIES);
	writel(SVA_DMA_CTRL_ENABLE, sdev->regs + SVA_DMA_REG_CTRL);
	sdev->tail = 0;
	return readl(sdev->regs + SVA_DMA_REG_STATUS) & SVA_DMA_STATUS_ENABLED;
}

/*
 * The completion status of @d, or 0xff when the device halted the ring (it
 * could not fetch a descriptor or write a completion): no status will come.
 */
static u8 sva_dma_completion(struct sva_dma_dev *sdev, struct sva_dma_desc *d)
{
	u8 done = READ_ONCE(d->status);

	if (!done && readl(sdev->regs + SVA_DMA_REG_STATUS) &
		     SVA_DMA_STATUS_HALTED)
		return 0xff;
	return done;
}

/* Run one descriptor; the caller holds sdev->lock. */
static int sva_dma_run(struct sva_dma_dev *sdev, struct sva_dma_file *f,
		       u8 opcode, struct sva_dma_op *op)
{
	struct sva_dma_desc *d = &sdev->ring[sdev->tail];
	u32 next = (sdev->tail + 1) % SVA_DMA_RING_ENTRIES;
	u32 status, error;
	u8 flags = 0;
	u8 done;
	int ret;

	status = readl(sdev->regs + SVA_DMA_REG_STATUS);
	if ((status & SVA_DMA_STATUS_HALTED) &&
	    !sva_dma_ring_start(sdev))
		return -EIO;
	if (!(readl(sdev->regs + SVA_DMA_REG_STATUS) & SVA_DMA_STATUS_ENABLED))
		return -EIO;

	if (!(op->flags & SVA_DMA_F_NO_PASID))
		flags |= SVA_DMA_DESC_PASID;
	if (op->flags & SVA_DMA_F_PRIV)
		flags |= SVA_DMA_DESC_PRIV;
	if (op->flags & SVA_DMA_F_WRITE)
		flags |= SVA_DMA_DESC_WRITE;

	memset(d, 0, sizeof(*d));
	d->opcode = opcode;
	d->flags = flags;
	/* The device rejects a PASID field without the PASID flag. */
	if (flags & SVA_DMA_DESC_PASID)
		d->pasid = cpu_to_le32(f->pasid);
	d->addr_a = cpu_to_le64(op->addr_a);
	d->addr_b = cpu_to_le64(op->addr_b);
	d->len = cpu_to_le64(op->len);
	d->pattern = cpu_to_le64(op->pattern);
	/* The descriptor must be in memory before the doorbell. */
	dma_wmb();
	writel(next, sdev->regs + SVA_DMA_REG_TAIL);
	sdev->tail = next;

	/*
	 * An operation waiting for a page response is still in flight; if it
	 * times out here, the restart drops it and the late response only sets
	 * the device's unexpected-group bit (harmless).
	 */
	ret = read_poll_timeout(sva_dma_completion, done, done != 0,
				SVA_DMA_POLL_US, SVA_DMA_TIMEOUT_US, false,
				sdev, d);
	if (ret || done == 0xff) {
		status = readl(sdev->regs + SVA_DMA_REG_STATUS);
		error = readl(sdev->regs + SVA_DMA_REG_ERROR);
		dev_warn(&sdev->pdev->dev,
			 "op %u %s (status %#x error %u), ring restarted\n",
			 opcode, ret ? "timed out" : "halted the ring", status,
			 error);
		sva_dma_ring_start(sdev);
		return ret ? -ETIMEDOUT : -EIO;
	}
	/* Read the rest of the completion record after its status. */
	dma_rmb();
	op->status = done;
	op->fault_reason = d->fault_reason;
	op->cflags = le16_to_cpu(d->cflags);
	op->result = le64_to_cpu(d->result);
	return 0;
}

static long sva_dma_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct sva_dma_file *f = file->private_data;
	struct sva_dma_dev *sdev = f->sdev;
	void __user *uarg = (void __user *)arg;
	struct sva_dma_info info = {};
	struct sva_dma_op op;
	u8 opcode;
	int ret;

	switch (cmd) {
	case SVA_DMA_IOC_INFO:
		if (mutex_lock_killable(&sdev->lock))
			return -EINTR;
		if (sdev->gone) {
			mutex_unlock(&sdev->lock);
			return -ENODEV;
		}
		info.pasid = f->pasid;
		info.max_transfer = sdev->max_transfer;
		info.ops_completed = readq(sdev->regs + SVA_DMA_REG_OPS_COMPLETED);
		info.ops_failed = readq(sdev->regs + SVA_DMA_REG_OPS_FAILED);
		info.page_requests = readq(sdev->regs + SVA_DMA_REG_PAGE_REQUESTS);
		info.atc_entries = readq(sdev->regs + SVA_DMA_REG_ATC_ENTRIES);
		info.atc_invalidations =
			readq(sdev->regs + SVA_DMA_REG_ATC_INVALIDATIONS);
		mutex_unlock(&sdev->lock);
		return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
	case SVA_DMA_IOC_COPY:
		opcode = SVA_DMA_OP_COPY;
		break;
	case SVA_DMA_IOC_FILL:
		opcode = SVA_DMA_OP_FILL;
		break;
	case SVA_DMA_IOC_COMPARE:
		opcode = SVA_DMA_OP_COMPARE;
		break;
	case SVA_DMA_IOC_PROBE:
		opcode = SVA_DMA_OP_PROBE;
		break;
	case SVA_DMA_IOC_ATS_TRANSLATE:
		opcode = SVA_DMA_OP_ATS_TRANSLATE;
		break;
	default:
		return -ENOTTY;
	}

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	if (op.flags & ~SVA_DMA_F_ALL)
		return -EINVAL;
	/* WRITE selects the access of PROBE and ATS_TRANSLATE only. */
	if ((op.flags & SVA_DMA_F_WRITE) && opcode != SVA_DMA_OP_PROBE &&
	    opcode != SVA_DMA_OP_ATS_TRANSLATE)
		return -EINVAL;
	/* Supervisor requests need a PASID (there is no RID_PASID privilege). */
	if ((op.flags & SVA_DMA_F_PRIV) && (op.flags & SVA_DMA_F_NO_PASID))
		return -EINVAL;
	/*
	 * The bond is for the opener's address space: a descriptor inherited
	 * through fork() or passed over a socket must not reach it.
	 */
	if (current->mm != f->mm)
		return -EPERM;
	/*
	 * Supervisor requests and requests without PASID (the DMA API domain,
	 * which maps the ring) reach beyond the caller's own memory.
	 */
	if ((op.flags & (SVA_DMA_F_PRIV | SVA_DMA_F_NO_PASID)) &&
	    !capable(CAP_SYS_RAWIO))
		return -EPERM;

	if (mutex_lock_killable(&sdev->lock))
		return -EINTR;
	ret = (sdev->gone || !f->sva) ? -ENODEV :
					sva_dma_run(sdev, f, opcode, &op);
	mutex_unlock(&sdev->lock);
	if (ret)
		return ret;
	return copy_to_user(uarg, &op, sizeof(op)) ? -EFAULT : 0;
}

static int sva_dma_open(struct inode *inode, struct file *file)
{
	struct sva_dma_dev *sdev = container_of(file->private_data,
						struct sva_dma_dev, misc);
	struct sva_dma_file *f;
	int ret;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;

	mutex_lock(&sdev->lock);
	if (sdev->gone) {
		ret = -ENODEV;
		goto out_unlock;
	}
	f->sva = iommu_sva_bind_device(&sdev->pdev->dev, current->mm);
	if (IS_ERR(f->sva)) {
		ret = PTR_ERR(f->sva);
		dev_warn(&sdev->pdev->dev, "SVA bind failed: %d\n", ret);
		goto out_unlock;
	}
	f->pasid = iommu_sva_get_pasid(f->sva);
	f->mm = current->mm;
	f->sdev = sdev;
	list_add(&f->node, &sdev->files);
	kref_get(&sdev->kref);
	mutex_unlock(&sdev->lock);

	file->private_data = f;
	return 0;

out_unlock:
	mutex_unlock(&sdev->lock);
	kfree(f);
	return ret;
}

static int sva_dma_release(struct inode *inode, struct file *file)
{
	struct sva_dma_file *f = file->private_data;
	struct sva_dma_dev *sdev = f->sdev;

	mutex_lock(&sdev->lock);
	/* After remove, the bond is already gone (see sva_dma_remove()). */
	if (f->sva)
		iommu_sva_unbind_device(f->sva);
	list_del(&f->node);
	mutex_unlock(&sdev->lock);
	kfree(f);
	kref_put(&sdev->kref, sva_dma_dev_free);
	return 0;
}

static const struct file_operations sva_dma_fops = {
	.owner		= THIS_MODULE,
	.open		= sva_dma_open,
	.release	= sva_dma_release,
	.unlocked_ioctl	= sva_dma_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static int sva_dma_enable_sva(struct sva_dma_dev *sdev)
{
	struct device *dev = &sdev->pdev->dev;
	int ret;

	/*
	 * 6.12 wants I/O page faults (PRI) on before SVA if the device has PRI.
	 * A page group response of Failure makes the device stop sending page
	 * requests (PRI status Response Failure) until PRI is reset, which
	 * here means unbinding and binding the driver again.
	 */
	ret = iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_IOPF);
	if (ret)
		dev_info(dev, "no I/O page faults (%d), pages must be present\n",
			 ret);
	else
		sdev->iopf = true;

	ret = iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_SVA);
	if (ret) {
		dev_err(dev, "cannot enable SVA: %d\n", ret);
		if (sdev->iopf)
			iommu_dev_disable_feature(dev, IOMMU_DEV_FEAT_IOPF);
		sdev->iopf = false;
	}
	return ret;
}

static void sva_dma_disable_sva(struct sva_dma_dev *sdev)
{
	struct device *dev = &sdev->pdev->dev;

	iommu_dev_disable_feature(dev, IOMMU_DEV_FEAT_SVA);
	if (sdev->iopf)
		iommu_dev_disable_feature(dev, IOMMU_DEV_FEAT_IOPF);
}

static int sva_dma_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct sva_dma_dev *sdev;
	u32 max_entries;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;

	sdev = kzalloc(sizeof(*sdev), GFP_KERNEL);
	if (!sdev)
		return -ENOMEM;
	kref_init(&sdev->kref);
	mutex_init(&sdev->lock);
	INIT_LIST_HEAD(&sdev->files);
	sdev->pdev = pdev;
	sdev->index = ida_alloc(&sva_dma_ida, GFP_KERNEL);
	if (sdev->index < 0) {
		ret = sdev->index;
		kfree(sdev);
		return ret;
	}

	sdev->regs = pcim_iomap_region(pdev, 0, KBUILD_MODNAME);
	if (IS_ERR(sdev->regs)) {
		ret = PTR_ERR(sdev->regs);
		goto out_put;
	}
	if (readl(sdev->regs + SVA_DMA_REG_ID) != SVA_DMA_ID) {
		dev_err(&pdev->dev, "unexpected ID register %#x\n",
			readl(sdev->regs + SVA_DMA_REG_ID));
		ret = -ENODEV;
		goto out_put;
	}
	max_entries = readl(sdev->regs + SVA_DMA_REG_MAX_RING_ENTRIES);
	if (max_entries < SVA_DMA_RING_ENTRIES) {
		dev_err(&pdev->dev, "ring of %u entries is too small\n",
			max_entries);
		ret = -ENODEV;
		goto out_put;
	}
	sdev->max_transfer = readl(sdev->regs + SVA_DMA_REG_MAX_TRANSFER);

	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto out_put;
	pci_set_master(pdev);

	sdev->ring = dmam_alloc_coherent(&pdev->dev,
					 SVA_DMA_RING_ENTRIES * sizeof(*sdev->ring),
					 &sdev->ring_dma, GFP_KERNEL);
	if (!sdev->ring) {
		ret = -ENOMEM;
		goto out_put;
	}

	ret = sva_dma_enable_sva(sdev);
	if (ret)
		goto out_put;

	if (!sva_dma_ring_start(sdev)) {
		dev_err(&pdev->dev, "ring did not enable (error %u)\n",
			readl(sdev->regs + SVA_DMA_REG_ERROR));
		ret = -EIO;
		goto out_disable;
	}

	snprintf(sdev->name, sizeof(sdev->name), "sva_dma%d", sdev->index);
	sdev->misc.minor = MISC_DYNAMIC_MINOR;
	sdev->misc.name = sdev->name;
	sdev->misc.fops = &sva_dma_fops;
	sdev->misc.parent = &pdev->dev;
	ret = misc_register(&sdev->misc);
	if (ret)
		goto out_disable;

	pci_set_drvdata(pdev, sdev);
	dev_info(&pdev->dev, "/dev/%s ready (I/O page faults %s)\n",
		 sdev->name, sdev->iopf ? "on" : "off");
	return 0;

out_disable:
	writel(0, sdev->regs + SVA_DMA_REG_CTRL);
	sva_dma_disable_sva(sdev);
out_put:
	kref_put(&sdev->kref, sva_dma_dev_free);
	return ret;
}

static void sva_dma_remove(struct pci_dev *pdev)
{
	struct sva_dma_dev *sdev = pci_get_drvdata(pdev);
	struct sva_dma_file *f;

	misc_deregister(&sdev->misc);
	mutex_lock(&sdev->lock);
	sdev->gone = true;
	writel(0, sdev->regs + SVA_DMA_REG_CTRL);
	/*
	 * Every PASID must be unbound before I/O page faults are disabled, and
	 * before the device leaves its IOMMU group; files still open only
	 * release their memory later.
	 */
	list_for_each_entry(f, &sdev->files, node) {
		iommu_sva_unbind_device(f->sva);
		f->sva = NULL;
	}
	mutex_unlock(&sdev->lock);
	sva_dma_disable_sva(sdev);
	kref_put(&sdev->kref, sva_dma_dev_free);
}

static const struct pci_device_id sva_dma_ids[] = {
	{ PCI_DEVICE(SVA_DMA_VENDOR, SVA_DMA_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, sva_dma_ids);

static struct pci_driver sva_dma_driver = {
	.name		= KBUILD_MODNAME,
	.id_table	= sva_dma_ids,
	.probe		= sva_dma_probe,
	.remove		= sva_dma_remove,
};
module_pci_driver(sva_dma_driver);

MODULE_DESCRIPTION("stalewalk SVA DMA test device");
MODULE_LICENSE("GPL");
