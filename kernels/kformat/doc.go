// Package kformat reads the Linux x86 kernel formats that a loader needs:
// the bzImage setup header, the compressed payload it carries (decoded to
// the vmlinux ELF in Go) and that ELF's load segments and Xen notes, and
// it decompresses an initramfs the same way. It holds no store and reads
// no packages, so the hv can import it without the kernel store's
// dependencies. Errors name no file: callers add it.
package kformat
