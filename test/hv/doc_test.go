// Package hv_test runs the micro-guests of test/guests through bin/hv and
// checks what they report and how the domain ends.
package hv_test
