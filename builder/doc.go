// Package builder turns a recipe and its lock into images: it fetches and
// verifies the pinned Debian packages, compiles this module's Go programs
// reproducibly, assembles the initramfs and writes every output through a
// temporary file and a rename. docs/recipes.md describes the whole flow.
package builder
