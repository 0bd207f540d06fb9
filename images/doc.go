// Package images writes the artefacts that xeno build produces: a newc
// initramfs, a hybrid BIOS+UEFI ISO and a raw GPT disk with one EFI system
// partition. Every writer is deterministic: the same inputs give the same
// bytes whatever the time zone, umask, working directory or wall clock,
// because every timestamp comes from the caller's epoch, every identifier
// from the caller's seed, and every tree is written in sorted order.
package images
