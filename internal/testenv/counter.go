package testenv

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Numbered returns N of every complete line "PREFIX N" in out, a micro-
// guest's console, in order, and fails t on the guest's FAIL line.
func Numbered(t testing.TB, out, prefix string) []int {
	t.Helper()
	if strings.Contains(out, "FAIL") {
		t.Fatalf("the guest failed:\n%s", out)
	}
	line := regexp.MustCompile(regexp.QuoteMeta(prefix) + ` (\d+)\n`)
	var ns []int
	for _, m := range line.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		ns = append(ns, n)
	}
	return ns
}

// Counts is Numbered for the counter micro-guests (counter,
// dirty_counter): their "XTF COUNT n" lines.
func Counts(t testing.TB, out string) []int { return Numbered(t, out, "XTF COUNT") }
