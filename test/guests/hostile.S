/*
 * hostile: a guest that misbehaves on purpose, to show that nothing it does
 * can crash the hv. It
 *   1. reads and writes (8, 16, 32 bits) a sample of the 16-bit port space
 *      (every 251st port), skipping only the ports whose writes have a
 *      documented effect (COM1, i8042, ACPI PM1, the xeno ports, PCI
 *      config/reset, QEMU's debug exit);
 *   2. reads and writes pseudo-random addresses in the MMIO hole and in
 *      guest-physical space beyond RAM, and pokes the virtio-mmio window
 *      with odd widths and offsets;
 *   3. if a virtio-mmio block device is at 0xd0000000, feeds it malformed
 *      virtqueues (head and next indexes out of range, a descriptor loop,
 *      buffers outside RAM and in the MMIO hole, a 4 GiB length, an avail
 *      index jump, a status byte the device may not write, a queue size
 *      that is not a power of two, a descriptor table outside RAM) and
 *      checks that each sets DEVICE_NEEDS_RESET, that an out-of-range
 *      sector fails with IOERR without a reset, and that after a reset the
 *      device still reads sector 0;
 * then prints "XTF RESULT hostile PASS". With "xtf.wait=pwrbtn" on the
 * command line it then waits for the ACPI power button (the control
 * socket's shutdown) and powers off through ACPI S5.
 */
#include "lib/xtf.h"
#include "lib/virtio.inc"

#define FAIL(why)					\
	PUTS("XTF RESULT hostile FAIL " why "\n");	\
	jmp out

/* CASE(name): reset and re-initialise the device, or fail. */
#define CASE(name)					\
	PUTS("XTF hostile virtio " name "\n");		\
	xor %edi, %edi;					\
	call virtio_init;				\
	test %eax, %eax;				\
	jz 9903f;					\
	FAIL("virtio init before " name);		\
9903:

/* EXPECT_RESET(name): eax is the status register after the kick. */
#define EXPECT_RESET(name)				\
	test $VIRTIO_S_NEEDS_RESET, %eax;		\
	jnz 9904f;					\
	FAIL("no DEVICE_NEEDS_RESET after " name);	\
9904:

	.text
	.globl guest_main
guest_main:
	push %rbp
	mov %rsp, %rbp
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15

	/* 1. Ports. */
	PUTS("XTF hostile ports\n")
	xor %r12d, %r12d			/* r12: port */
	xor %r13d, %r13d			/* r13: ports hit */
1:	mov %r12d, %edi
	call port_skip
	test %eax, %eax
	jnz 2f
	mov %r12d, %edx
	inb %dx, %al
	inw %dx, %ax
	inl %dx, %eax
	mov $0xa5a5a5a5, %eax
	outb %al, %dx
	outw %ax, %dx
	outl %eax, %dx
	inc %r13d
2:	add $251, %r12d
	cmp $0x10000, %r12d
	jb 1b
	PUTS("XTF hostile ports done count=")
	mov %r13d, %edi
	call xtf_putdec
	PUTS("\n")

	/* 2. MMIO: 48 pseudo-random addresses in [3 GiB, 4 GiB) and beyond RAM. */
	PUTS("XTF hostile mmio\n")
	mov $0x2545f4914f6cdd1d, %r14		/* r14: LCG state */
	xor %r13d, %r13d			/* r13: addresses hit */
	mov $48, %r15d
3:	mov $6364136223846793005, %rax
	imul %rax, %r14
	mov $1442695040888963407, %rax
	add %rax, %r14
	mov %r14, %rax
	shr $34, %rax				/* 30 random bits */
	and $~7, %eax
	test $1, %r15d
	jz 4f
	add $0xc0000000, %eax			/* odd rounds: the MMIO hole */
	jmp 5f
4:	and $0x3fffffff, %eax			/* even rounds: 1 GiB .. 2 GiB, */
	or $0x40000000, %eax			/* far beyond the test's RAM */
5:	mov %eax, %edi
	call mmio_skip
	test %eax, %eax
	jnz 6f
	mov %edi, %ebx
	mov (%rbx), %eax
	movb (%rbx), %al
	movw 2(%rbx), %ax
	movl $0xdeadbeef, (%rbx)
	movb $0x5a, 1(%rbx)
	mov $0x0123456789abcdef, %rax
	mov %rax, (%rbx)
	mov (%rbx), %rax
	inc %r13d
6:	dec %r15d
	jnz 3b
	PUTS("XTF hostile mmio done count=")
	mov %r13d, %edi
	call xtf_putdec
	PUTS("\n")

	/* The virtio window with widths and offsets a driver never uses. */
	mov $VIRTIO_BASE, %ebx
	cmpl $VIRTIO_MAGIC_VALUE, VIRTIO_MAGIC(%rbx)
	je 7f
	PUTS("XTF hostile virtio absent: skipping the virtqueue cases\n")
	jmp pass
7:	movb VIRTIO_MAGIC + 1(%rbx), %al
	movw VIRTIO_VERSION + 2(%rbx), %ax
	mov VIRTIO_CONFIG(%rbx), %rax		/* 64-bit config read */
	mov 0xffc(%rbx), %eax
	movb 0xfff(%rbx), %al
	movb $0xff, VIRTIO_STATUS(%rbx)		/* byte write to a register */
	movw $0xffff, VIRTIO_QUEUE_NOTIFY(%rbx)
	movl $0xffffffff, VIRTIO_CONFIG(%rbx)	/* config is read-only */
	movq $-1, VIRTIO_CONFIG + 8(%rbx)
	movl $0xffffffff, 0x0fc(%rbx)		/* ConfigGeneration is read-only */
	movl $0xffffffff, 0x3(%rbx)		/* unaligned */
	movl $7, VIRTIO_QUEUE_SEL(%rbx)		/* a queue that does not exist */
	movl $1, VIRTIO_QUEUE_READY(%rbx)
	movl $0, VIRTIO_QUEUE_NOTIFY(%rbx)
	movl $7, VIRTIO_QUEUE_NOTIFY(%rbx)
	movl $0, VIRTIO_QUEUE_SEL(%rbx)
	movl $0xffffffff, VIRTIO_QUEUE_NUM(%rbx)
	movl $0, VIRTIO_QUEUE_NOTIFY(%rbx)	/* before any setup */
	PUTS("XTF hostile virtio window done\n")

	/* 3. Malformed virtqueues. Header at REQ_HDR reads sector 0. */
	movl $VIRTIO_BLK_T_IN, REQ_HDR
	movl $0, REQ_HDR + 4
	movq $0, REQ_HDR + 8

	CASE("head out of range")
	mov $200, %edi
	call virtio_kick
	EXPECT_RESET("head out of range")

	CASE("next out of range")
	mov $VQ_DESC, %ebx
	call desc_hdr
	movw $100, 14(%rbx)
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("next out of range")

	CASE("descriptor loop")
	call desc_hdr
	call desc_data
	movw $0, 30(%rbx)			/* data -> header -> data ... */
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("descriptor loop")

	CASE("buffer outside RAM")
	call desc_chain
	mov $0x7fff00000000, %rax
	mov %rax, 16(%rbx)
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("buffer outside RAM")

	CASE("buffer in the MMIO hole")
	call desc_chain
	movl $VIRTIO_BASE, %eax
	mov %rax, 16(%rbx)
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("buffer in the MMIO hole")

	CASE("4 GiB length")
	call desc_chain
	movl $0xffffffff, 24(%rbx)
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("4 GiB length")

	CASE("buffer wrapping the address space")
	call desc_chain
	movq $-256, 16(%rbx)
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("buffer wrapping the address space")

	CASE("status not writable")
	call desc_chain
	movw $0, 44(%rbx)			/* status descriptor device-readable */
	movw $VRING_DESC_F_NEXT, 28(%rbx)	/* and the data too */
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("status not writable")

	CASE("avail index jump")
	call desc_chain
	addw $50, VQ_AVAIL + 2
	xor %edi, %edi
	call virtio_kick
	EXPECT_RESET("avail index jump")

	CASE("queue size 3")
	mov $VIRTIO_BASE, %r11d
	movl $0, VIRTIO_STATUS(%r11)
	movl $(VIRTIO_S_ACK | VIRTIO_S_DRIVER), VIRTIO_STATUS(%r11)
	movl $3, VIRTIO_QUEUE_NUM(%r11)
	movl $VQ_DESC, VIRTIO_QUEUE_DESC_LO(%r11)
	movl $1, VIRTIO_QUEUE_READY(%r11)
	mov VIRTIO_STATUS(%r11), %eax
	EXPECT_RESET("queue size 3")
	cmpl $0, VIRTIO_QUEUE_READY(%r11)
	je 8f
	FAIL("queue of size 3 enabled")

8:	CASE("descriptor table outside RAM")
	mov $VIRTIO_BASE, %r11d
	movl $0, VIRTIO_STATUS(%r11)
	movl $(VIRTIO_S_ACK | VIRTIO_S_DRIVER), VIRTIO_STATUS(%r11)
	movl $VQ_SIZE, VIRTIO_QUEUE_NUM(%r11)
	movl $0xfffff000, VIRTIO_QUEUE_DESC_LO(%r11)
	movl $0x7fff, VIRTIO_QUEUE_DESC_HI(%r11)
	movl $1, VIRTIO_QUEUE_READY(%r11)
	mov VIRTIO_STATUS(%r11), %eax
	EXPECT_RESET("descriptor table outside RAM")

	CASE("sector out of range")
	mov $VIRTIO_BLK_T_IN, %edi
	mov $-1, %rsi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	cmp $1, %eax
	je 9f
	FAIL("a read of sector 2^64-1 did not fail with IOERR")
9:	mov $VIRTIO_BASE, %r11d
	testl $VIRTIO_S_NEEDS_RESET, VIRTIO_STATUS(%r11)
	jz 10f
	FAIL("an I/O error reset the device")

10:	CASE("good read after all that")
	mov $VIRTIO_BLK_T_IN, %edi
	xor %esi, %esi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	test %eax, %eax
	jz pass
	FAIL("the device does not work after the hostile cases")

pass:	PUTS("XTF RESULT hostile PASS\n")
	CMDLINE_HAS("xtf.wait=pwrbtn")
	test %eax, %eax
	jz out
	/* Wait for the power button, then ACPI S5 like an OS would. */
	PUTS("XTF hostile waiting for the power button\n")
	mov $ACPI_PM1A_EN, %dx
	mov $ACPI_PWRBTN_EN, %ax
	outw %ax, %dx
11:	mov $20000, %ecx
12:	dec %ecx				/* ~10 ms between polls here */
	jnz 12b
	mov $ACPI_PM1A_STS, %dx
	inw %dx, %ax
	test $ACPI_PWRBTN_STS, %ax
	jz 11b
	mov $ACPI_PWRBTN_STS, %ax
	outw %ax, %dx				/* write 1 to clear */
	PUTS("XTF hostile power button: ACPI S5\n")
	mov $ACPI_PM1A_CNT, %dx
	mov $((ACPI_S5_SLP_TYP << 10) | ACPI_SLP_EN), %ax
	outw %ax, %dx
out:	lea -40(%rbp), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	pop %rbp
	ret

#include "lib/skip.inc"

/* mmio_skip(edi = address) -> eax = 1 for the virtio windows, IOAPIC, LAPIC. */
mmio_skip:
	mov $1, %eax
	mov %edi, %ecx
	sub $VIRTIO_BASE, %ecx
	cmp $0x10000, %ecx
	jb 1f
	cmp $0xfec00000, %edi
	jae 1f
	xor %eax, %eax
1:	ret

/*
 * Descriptor helpers over rbx = VQ_DESC: desc_hdr makes descriptor 0 the
 * 16-byte header chained to 1; desc_data makes 1 a 512-byte device-writable
 * buffer chained to 2; desc_chain makes the whole valid read of sector 0
 * (header, data, status), for a case to spoil.
 */
desc_hdr:
	mov $VQ_DESC, %ebx
	movq $REQ_HDR, 0(%rbx)
	movl $16, 8(%rbx)
	movw $VRING_DESC_F_NEXT, 12(%rbx)
	movw $1, 14(%rbx)
	ret
desc_data:
	movq $BUF_READ, 16(%rbx)
	movl $512, 24(%rbx)
	movw $(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE), 28(%rbx)
	movw $2, 30(%rbx)
	ret
desc_chain:
	call desc_hdr
	call desc_data
	movq $REQ_STATUS, 32(%rbx)
	movl $1, 40(%rbx)
	movw $VRING_DESC_F_WRITE, 44(%rbx)
	movw $0, 46(%rbx)
	ret
