/*
 * virtio_blk: drives the first virtio-mmio block device (0xd0000000) as a
 * minimal driver would and checks a disk that test/hv prepared:
 *   sector 0: byte i = (7*i + 3) & 0xff   (checked)
 *   sector 1: 0xee                          (overwritten unless read-only)
 * It negotiates VERSION_1 (and RO when offered), sets up one 8-entry
 * queue, then: reads sector 0; writes sector 1 with byte i = (i ^ 0x5a) &
 * 0xff; reads sector 1 back; flushes; reads past the end of the disk;
 * asks for the device ID. It prints
 *   XTF virtio_blk ro=R capacity=N write=S flush=S oob=S isr=I id=ID
 * (S: status byte; 0 OK, 1 IOERR) and the verdict. On a read-only disk the
 * write must fail with IOERR and sector 1 must still read 0xee.
 */
#include "lib/xtf.h"
#include "lib/virtio.inc"

#define FAIL(why)					\
	PUTS("XTF RESULT virtio_blk FAIL " why "\n");	\
	jmp out

	.text
	.globl guest_main
guest_main:
	push %rbp
	mov %rsp, %rbp
	push %rbx
	push %r12
	push %r13
	push %r14
	mov $VIRTIO_BLK_F_RO, %edi
	call virtio_init
	test %eax, %eax
	jz 1f
	PUTS("XTF virtio_blk init failed at step ")
	mov %eax, %edi
	call xtf_putdec
	PUTS("\n")
	FAIL("virtio init")
1:	mov virtio_features(%rip), %r12d
	and $VIRTIO_BLK_F_RO, %r12d		/* r12: read-only */

	/* Sector 0 holds the host's pattern. */
	mov $VIRTIO_BLK_T_IN, %edi
	xor %esi, %esi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	test %eax, %eax
	jz 2f
	FAIL("read of sector 0 did not complete with OK")
2:	mov virtio_isr(%rip), %r14d		/* r14: InterruptStatus seen */
	xor %ecx, %ecx
3:	lea 3(%rcx, %rcx, 2), %eax		/* 3i + 3 ... */
	lea (%rax, %rcx, 4), %eax		/* ... + 4i = 7i + 3 */
	cmp %al, BUF_READ(%rcx)
	je 4f
	FAIL("sector 0 does not hold the host's pattern")
4:	inc %ecx
	cmp $512, %ecx
	jb 3b

	/* Write sector 1. */
	xor %ecx, %ecx
5:	mov %ecx, %eax
	xor $0x5a, %eax
	mov %al, BUF_WRITE(%rcx)
	inc %ecx
	cmp $512, %ecx
	jb 5b
	mov $VIRTIO_BLK_T_OUT, %edi
	mov $1, %esi
	mov $BUF_WRITE, %edx
	xor %ecx, %ecx
	mov $512, %r8d
	call virtio_req
	mov %eax, %r13d				/* r13: write status */
	xor %edx, %edx
	test %r12d, %r12d
	setnz %dl				/* expected: IOERR (1) iff read-only */
	cmp %edx, %eax
	je 6f
	FAIL("write status is not OK on a writable disk, IOERR on a read-only one")

	/* Read it back. */
6:	mov $BUF_READ, %edi
	mov $0x55, %al
	mov $512, %ecx
	rep stosb
	mov $VIRTIO_BLK_T_IN, %edi
	mov $1, %esi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	test %eax, %eax
	jz 7f
	FAIL("read of sector 1 failed")
7:	xor %ecx, %ecx
8:	movzbl BUF_WRITE(%rcx), %eax
	test %r12d, %r12d
	jz 9f
	mov $0xee, %eax
9:	cmp %al, BUF_READ(%rcx)
	je 10f
	FAIL("sector 1 does not read back what the disk should hold")
10:	inc %ecx
	cmp $512, %ecx
	jb 8b

	/* Flush: OK on both kinds of disk. */
	mov $VIRTIO_BLK_T_FLUSH, %edi
	xor %esi, %esi
	xor %r8d, %r8d
	call virtio_req
	mov %eax, %ebx				/* ebx: flush status */
	test %eax, %eax
	jz 11f
	FAIL("flush failed")

	/* Capacity from the config space, then a read just past the end. */
11:	mov $VIRTIO_BASE, %r11d
	mov VIRTIO_CONFIG(%r11), %esi
	mov VIRTIO_CONFIG + 4(%r11), %eax
	shl $32, %rax
	or %rax, %rsi
	push %rsi
	mov $VIRTIO_BLK_T_IN, %edi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	pop %rsi
	push %rsi
	push %rax
	cmp $1, %eax
	je 12f
	FAIL("a read past the end did not fail with IOERR")

12:	mov $BUF_WRITE, %edi
	xor %eax, %eax
	mov $32, %ecx
	rep stosb
	mov $VIRTIO_BLK_T_GET_ID, %edi
	xor %esi, %esi
	mov $BUF_WRITE, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $20, %r8d
	call virtio_req
	test %eax, %eax
	jz 13f
	FAIL("GET_ID failed")

13:	PUTS("XTF virtio_blk ro=")
	xor %edi, %edi
	test %r12d, %r12d
	setnz %dil
	call xtf_putdec
	PUTS(" capacity=")
	pop %rax				/* oob status */
	pop %rdi				/* capacity */
	push %rax
	call xtf_putdec
	PUTS(" write=")
	mov %r13d, %edi
	call xtf_putdec
	PUTS(" flush=")
	mov %ebx, %edi
	call xtf_putdec
	PUTS(" oob=")
	pop %rdi
	call xtf_putdec
	PUTS(" isr=")
	mov %r14d, %edi
	call xtf_putdec
	PUTS(" id=")
	mov $BUF_WRITE, %edi
	call xtf_puts
	PUTS("\n")
	test $1, %r14d
	jnz 14f
	FAIL("no used-ring interrupt status after a completed request")
14:	PUTS("XTF RESULT virtio_blk PASS\n")
out:	lea -32(%rbp), %rsp			/* FAIL may leave values pushed */
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	pop %rbp
	ret
