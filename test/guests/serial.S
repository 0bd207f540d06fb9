/*
 * serial: the basic "boot and print" guest. It marks the boot timer first
 * (so the benchmark measures the VMM, not the guest), leaves through
 * QEMU's isa-debug-exit port 0xf4 when the command line says
 * "xtf.debugexit" (the QEMU peer of the benchmark), prints its result
 * over COM1 and powers off.
 */
#include "lib/xtf.h"

	.text
	.globl guest_main
guest_main:
	call xtf_boot_timer
	cmpl $0, xtf_pvh(%rip)
	jne 2f
	CMDLINE_HAS("xtf.debugexit")
	test %eax, %eax
	jz 1f
2:
	mov $0xf4, %dx
	xor %eax, %eax
	outb %al, %dx
1:	PUTS("XTF serial hello from the micro-guest\n")
	/* The same console through the xeno console port (interface 1.0+). */
	lea conmsg(%rip), %rsi
	mov $XENO_PORT_CONSOLE, %dx
3:	lodsb
	test %al, %al
	jz 4f
	outb %al, %dx
	jmp 3b
4:
	PUTS("XTF RESULT serial PASS\n")
	ret

	.section .rodata
conmsg:	.asciz "XTF console-port hello\n"
