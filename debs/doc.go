// Package debs reads Debian binary packages (.deb) and fetches them with
// apt's ordinary client into a cache where every file is checked by sha256
// before use.
//
// A .deb is an ar archive holding debian-binary, control.tar.* and
// data.tar.*; Open indexes the members and parses the control file, Walk
// streams data.tar. Every size read from the archive is bounded, so a
// hostile or truncated file gives an error naming it, never a huge
// allocation.
package debs
