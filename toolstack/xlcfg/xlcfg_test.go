package xlcfg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// render prints a Config in the order its keys were first set, one
// `key = value` per line, which is what the .want files hold.
func render(c *Config) string {
	var b strings.Builder
	for _, k := range c.Keys() {
		fmt.Fprintf(&b, "%s = %s\n", k, c.Get(k).Value)
	}
	return b.String()
}

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.cfg")
	if len(files) < 5 {
		t.Fatalf("only %d valid test files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".cfg") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(f, src)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(c); got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			// What render prints must parse back to the same thing.
			c2, err := Parse("rendered", []byte(render(c)))
			if err != nil {
				t.Fatalf("re-parse of rendered output: %v", err)
			}
			if render(c2) != render(c) {
				t.Errorf("render is not stable:\n%s\nvs\n%s", render(c2), render(c))
			}
		})
	}
}

// Each invalid file starts with `# error: LINE:COL: TEXT`: the error must
// name the file, that exact position, and contain TEXT.
func TestInvalidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.cfg")
	if len(files) < 10 {
		t.Fatalf("only %d invalid test files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := bufio.NewReader(bytes.NewReader(src)).ReadString('\n')
			spec, ok := strings.CutPrefix(strings.TrimSpace(first), "# error: ")
			if !ok {
				t.Fatalf("first line must be `# error: LINE:COL: TEXT`, is %q", first)
			}
			var line, col int
			var text string
			if n, _ := fmt.Sscanf(spec, "%d:%d:", &line, &col); n != 2 {
				t.Fatalf("bad error spec %q", spec)
			}
			text = strings.TrimSpace(spec[strings.Index(spec[strings.Index(spec, ":")+1:], ":")+strings.Index(spec, ":")+2:])
			_, err = Parse(f, src)
			if err == nil {
				t.Fatal("parsed without error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if pe.Pos.File != f || pe.Pos.Line != line || pe.Pos.Col != col {
				t.Errorf("error at %s, want %s:%d:%d (%v)", pe.Pos, f, line, col, err)
			}
			if !strings.Contains(err.Error(), text) {
				t.Errorf("error %q does not contain %q", err, text)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d:%d: ", f, line, col)) {
				t.Errorf("error %q does not start with file:line:col", err)
			}
		})
	}
}

func TestNumbers(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want int64
	}{
		{"n = 0", 0}, {"n = 10", 10}, {"n = 010", 8}, {"n = 0x1F", 31}, {"n = 0Xff", 255},
		{"n = 9223372036854775807", 1<<63 - 1},
	} {
		c, err := Parse("t", []byte(tc.src))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		v := c.Get("n").Value
		if v.Kind != Number || v.Int != tc.want {
			t.Errorf("%s: got %v %d, want %d", tc.src, v.Kind, v.Int, tc.want)
		}
	}
	for _, bad := range []string{"n = 0b1", "n = 0o7", "n = 1_000", "n = 0x1g", "n = 9223372036854775808"} {
		if _, err := Parse("t", []byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// A later Parse applies on top of an earlier one (xl create's KEY=VALUE
// overrides), and a failing Parse leaves the Config unchanged.
func TestLayeredParse(t *testing.T) {
	c, err := Parse("a.cfg", []byte("memory = 128\ndisk = [\"a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Parse("command line", []byte("memory=256\ndisk+=[\"b\"]")); err != nil {
		t.Fatal(err)
	}
	if got := render(c); got != "memory = 256\ndisk = [\"a\", \"b\"]\n" {
		t.Errorf("got %q", got)
	}
	if c.Get("memory").Value.Pos.File != "command line" {
		t.Errorf("memory's position should be the override's, is %s", c.Get("memory").Pos)
	}
	before := render(c)
	if err := c.Parse("command line", []byte("memory = 1\ndisk += \"x\"")); err == nil {
		t.Fatal("mismatched += accepted")
	}
	if render(c) != before {
		t.Errorf("failed Parse changed the config: %q", render(c))
	}
}

func TestDeepNesting(t *testing.T) {
	src := "x = " + strings.Repeat("[", 100) + strings.Repeat("]", 100)
	_, err := Parse("deep.cfg", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "nest deeper") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.cfg")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("fuzz.cfg", src)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if pe.Pos.Line < 1 || pe.Pos.Col < 1 || pe.Pos.Line > bytes.Count(src, []byte("\n"))+1 {
				t.Fatalf("error position %v out of range", pe.Pos)
			}
			return
		}
		// Whatever parses must render to something that parses to the same.
		out := render(c)
		c2, err := Parse("rendered", []byte(out))
		if err != nil {
			t.Fatalf("rendered output does not parse: %v\n%s", err, out)
		}
		if render(c2) != out {
			t.Fatalf("render not stable:\n%s\nvs\n%s", out, render(c2))
		}
	})
}
