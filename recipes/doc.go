// Package recipes reads xeno's image recipes (TOML), checks every value
// with errors that say file:line, and reads and writes their lock files.
// docs/recipes.md documents every key.
package recipes
