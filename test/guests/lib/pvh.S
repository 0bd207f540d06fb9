/*
 * pvh.S: a PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) for micro-guests linked
 * with pvh.ld, so that QEMU (-M microvm -kernel NAME.pvh.elf) can boot the
 * same guest code as the hv: the peer of the VMM-overhead benchmark. It
 * enters in 32-bit protected mode, switches to long mode on static page
 * tables (0-1 GiB, 2 MiB pages, plus the LAPIC/IOAPIC GiB) and joins the
 * 64-bit entry with RSI = 0 (no boot_params) and xtf_pvh = 1.
 */
#include "xtf.h"

	.section .note.pvh, "a"
	.balign 4
	.long 4			/* namesz */
	.long 8			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start32

	.text
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	lgdt pvh_gdtr
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov $pvh_pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax
	mov %eax, %cr0
	ljmp $0x10, $pvh_start64
	.code64
pvh_start64:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	movl $1, xtf_pvh(%rip)
	xor %esi, %esi
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	jmp xtf_entry64

	.data
	.balign 8
pvh_gdt:
	.quad 0, 0
	.quad 0x00af9b000000ffff	/* 0x10: 64-bit code */
	.quad 0x00cf93000000ffff	/* 0x18: data */
pvh_gdtr:
	.word 31
	.long pvh_gdt

	.balign 4096
pvh_pml4:
	.quad pvh_pdpt + 3
	.fill 511, 8, 0
pvh_pdpt:
	.quad pvh_pd0 + 3
	.quad 0, 0
	.quad pvh_pd3 + 3		/* 3-4 GiB: IOAPIC, LAPIC */
	.fill 508, 8, 0
pvh_pd0:
	.set i, 0
	.rept 512
	.quad (i << 21) | 0x83
	.set i, i + 1
	.endr
pvh_pd3:
	.set i, 0
	.rept 512
	.quad (0xc0000000 + (i << 21)) | 0x83
	.set i, i + 1
	.endr
