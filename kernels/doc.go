// Package kernels is the versioned kernel store: it imports Debian
// linux-image-* packages and bare bzImages, builds xeno's own kernel from
// a pinned linux-source, and keeps every kernel pinned by sha256. The
// formats themselves (bzImage, payload compression, ELF) are package
// kformat's.
package kernels
