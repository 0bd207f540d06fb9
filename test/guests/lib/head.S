/*
 * head.S: the bzImage header, the 64-bit entry and a tiny runtime (serial
 * output, hex/decimal printing, power off) shared by every micro-guest.
 * A guest supplies guest_main (called with interrupts off, on a 16 KiB
 * stack) and may return to power off.
 */
#include "xtf.h"

	.section .setup, "a"
	.code16
	.org 0x1f1
setup_sects:	.byte 1
root_flags:	.word 0
syssize:	.long _syssize
ram_size:	.word 0
vid_mode:	.word 0xffff
root_dev:	.word 0
boot_flag:	.word 0xaa55
	.org 0x200
	.byte 0xeb, 0xfe		/* real-mode entry: not supported, spin */
	.ascii "HdrS"
	.word 0x020f			/* boot protocol 2.15 */
	.long 0				/* realmode_swtch */
	.word 0x1000			/* start_sys_seg */
	.word xtf_version - 0x200	/* kernel_version */
	.byte 0				/* type_of_loader */
	.byte 0x01			/* loadflags: LOADED_HIGH */
	.word 0x8000			/* setup_move_size */
	.long XTF_LOAD_ADDR		/* code32_start */
	.long 0, 0			/* ramdisk_image, ramdisk_size */
	.long 0				/* bootsect_kludge */
	.word 0				/* heap_end_ptr */
	.byte 0, 0			/* ext_loader_ver, ext_loader_type */
	.long 0				/* cmd_line_ptr */
	.long 0x7fffffff		/* initrd_addr_max */
	.long 0x200000			/* kernel_alignment */
	.byte 0				/* relocatable_kernel: no */
	.byte 21			/* min_alignment (log2) */
	.word 0x0001			/* xloadflags: XLF_KERNEL_64 */
	.long 2047			/* cmdline_size */
	.long 0				/* hardware_subarch */
	.quad 0				/* hardware_subarch_data */
	/* The "payload" is the protected-mode code itself, stored raw:
	 * loaders that only bound-check it accept the guest. */
	.long 0				/* payload_offset */
	.long _pm_file_size		/* payload_length */
	.quad 0				/* setup_data */
	.quad XTF_LOAD_ADDR		/* pref_address */
	.long _init_size		/* init_size */
	.long 0				/* handover_offset */
	.long 0				/* kernel_info_offset */
xtf_version:
	.asciz "xtf micro-guest"

	.section .text.head, "ax"
	.code32
	/* 32-bit entry (startup_32): not supported by the micro-guests. */
1:	cli
	hlt
	jmp 1b

	.code64
	.org 0x200
	.globl xtf_entry64
xtf_entry64:
	cli
	mov %rsi, xtf_boot_params(%rip)
	mov %r8, xtf_entry_r8(%rip)
	mov %r9, xtf_entry_r9(%rip)
	mov %r10, xtf_entry_r10(%rip)
	lea xtf_stacks + XTF_STACK_SIZE(%rip), %rsp
	xor %ebp, %ebp
	call xtf_idt_init
	call guest_main
	call xtf_poweroff
2:	cli
	hlt
	jmp 2b

	.text
/* xtf_putc(dil): write one byte to COM1, polling THRE. */
	.globl xtf_putc
xtf_putc:
	mov $COM1_LSR, %dx
1:	inb %dx, %al
	test $LSR_THRE, %al
	jz 1b
	mov %edi, %eax
	mov $COM1, %dx
	outb %al, %dx
	ret

/* xtf_puts(rdi): write a NUL-terminated string. */
	.globl xtf_puts
xtf_puts:
	push %rbx
	mov %rdi, %rbx
1:	movzbl (%rbx), %edi
	test %edi, %edi
	jz 2f
	call xtf_putc
	inc %rbx
	jmp 1b
2:	pop %rbx
	ret

/* xtf_puthex(rdi = value, esi = digits): lower-case hex, zero padded. */
	.globl xtf_puthex
xtf_puthex:
	push %rbx
	push %r12
	mov %rdi, %rbx
	mov %esi, %r12d
1:	test %r12d, %r12d
	jz 2f
	dec %r12d
	lea (,%r12, 4), %ecx
	mov %rbx, %rax
	shr %cl, %rax
	and $0xf, %eax
	lea hexdigits(%rip), %rdx
	movzbl (%rdx, %rax), %edi
	call xtf_putc
	jmp 1b
2:	pop %r12
	pop %rbx
	ret

/* xtf_putdec(rdi): unsigned decimal. */
	.globl xtf_putdec
xtf_putdec:
	push %rbx
	sub $32, %rsp
	lea 31(%rsp), %rbx
	movb $0, (%rbx)
	mov %rdi, %rax
	mov $10, %ecx
1:	xor %edx, %edx
	div %rcx
	add $'0', %dl
	dec %rbx
	mov %dl, (%rbx)
	test %rax, %rax
	jnz 1b
	mov %rbx, %rdi
	call xtf_puts
	add $32, %rsp
	pop %rbx
	ret

/*
 * xtf_cmdline_has(rdi = needle): rax = 1 if the kernel command line
 * (boot_params.hdr.cmd_line_ptr) contains the string, else 0.
 */
	.globl xtf_cmdline_has
xtf_cmdline_has:
	mov xtf_boot_params(%rip), %rsi
	mov 0x228(%rsi), %esi
	test %esi, %esi
	jz 4f
1:	cmpb $0, (%rsi)
	je 4f
	xor %ecx, %ecx
2:	movb (%rdi, %rcx), %al
	test %al, %al
	je 3f
	cmpb (%rsi, %rcx), %al
	jne 5f
	inc %rcx
	jmp 2b
5:	inc %rsi
	jmp 1b
3:	mov $1, %eax
	ret
4:	xor %eax, %eax
	ret

/* xtf_boot_timer: mark "init started" for the hv's boot-timer. */
	.globl xtf_boot_timer
xtf_boot_timer:
	mov $XENO_PORT_BOOT_TIMER, %dx
	mov $1, %al
	outb %al, %dx
	ret

/*
 * xtf_poweroff: the shutdown port (interface >= 1.2), then ACPI S5 through
 * PM1a_CNT for older interfaces; spin if both are ignored.
 */
	.globl xtf_poweroff
xtf_poweroff:
	mov $XENO_PORT_SHUTDOWN, %dx
	mov $XENO_SHUTDOWN_POWEROFF, %al
	outb %al, %dx
	mov $ACPI_PM1A_CNT, %dx
	mov $((ACPI_S5_SLP_TYP << 10) | ACPI_SLP_EN), %ax
	outw %ax, %dx
1:	cli
	hlt
	jmp 1b

/*
 * An exception a guest did not ask for is reported, not turned into a
 * triple fault: KVM on AMD re-initializes a vCPU that triple-faults, so
 * the hv's crash dump would hold only reset values (docs/kvm-notes.md).
 * Each vector's stub pushes a zero where the CPU pushes no error code,
 * then the vector; xtf_exception prints them with RIP, RSP and CR2 and
 * ends the domain through the shutdown port's crash reason. Guests that
 * need their own handlers load their own IDT.
 */
	.macro xtf_vector n
	.balign 16
	.if \n == 8 || \n == 10 || \n == 11 || \n == 12 || \n == 13 || \n == 14 || \n == 17 || \n == 21 || \n == 29 || \n == 30
	.else
	pushq $0
	.endif
	pushq $\n
	jmp xtf_exception
	.endm

	.balign 16
xtf_vectors:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	xtf_vector \n
	.endr

/* xtf_idt_init: interrupt gates for vectors 0-31, to xtf_vectors. */
xtf_idt_init:
	lea xtf_idt(%rip), %rdi
	lea xtf_vectors(%rip), %rax
	mov %cs, %ecx
	mov $32, %esi
1:	mov %ax, (%rdi)
	mov %cx, 2(%rdi)
	movw $0x8e00, 4(%rdi)		/* present, DPL 0, 64-bit interrupt gate */
	mov %rax, %rdx
	shr $16, %rdx
	mov %dx, 6(%rdi)
	shr $16, %rdx
	mov %edx, 8(%rdi)
	movl $0, 12(%rdi)
	add $16, %rax
	add $16, %rdi
	dec %esi
	jnz 1b
	lea xtf_idt(%rip), %rax
	mov %rax, xtf_idtr+2(%rip)
	lidt xtf_idtr(%rip)
	ret

/* The stack: vector, error code, then the CPU's RIP, CS, RFLAGS, RSP. */
xtf_exception:
	mov %rsp, %rbx
	PUTS("XTF EXCEPTION vector ")
	mov (%rbx), %rdi
	call xtf_putdec
	PUTS(" error ")
	mov 8(%rbx), %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" rip ")
	mov 16(%rbx), %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS(" rsp ")
	mov 40(%rbx), %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS(" cr2 ")
	mov %cr2, %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS("\nXTF RESULT exception FAIL\n")
	mov $XENO_PORT_SHUTDOWN, %dx
	mov $XENO_SHUTDOWN_CRASH, %al
	outb %al, %dx
1:	cli
	hlt
	jmp 1b

	.section .rodata
hexdigits:
	.ascii "0123456789abcdef"

	.data
	.balign 8
	.globl xtf_boot_params, xtf_entry_r8, xtf_entry_r9, xtf_entry_r10, xtf_pvh
xtf_boot_params:	.quad 0
xtf_entry_r8:		.quad 0
xtf_entry_r9:		.quad 0
xtf_entry_r10:		.quad 0
xtf_pvh:		.long 0		/* 1 when entered through lib/pvh.S (QEMU) */
	.balign 8
xtf_idtr:		.word 32 * 16 - 1
			.quad 0

	.bss
	.balign 4096
xtf_idt:
	.skip 32 * 16
	.balign 4096
	.globl xtf_stacks
xtf_stacks:
	.skip XTF_STACK_SIZE * XTF_MAX_CPUS
