package xl

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"ssh", []string{"ssh"}},
		{"  ssh  -p 2222\t-i key ", []string{"ssh", "-p", "2222", "-i", "key"}},
		{`ssh -o 'ProxyCommand nc %h 22'`, []string{"ssh", "-o", "ProxyCommand nc %h 22"}},
		{`env "XENO_STATE_DIR=/a b" x`, []string{"env", "XENO_STATE_DIR=/a b", "x"}},
		{`a"b"'c'd`, []string{"abcd"}},
		{`"a \"q\" \\ \$"`, []string{`a "q" \ $`}},
		{`a\ b`, []string{"a b"}},
		{`''`, []string{""}},
		{"", nil},
	} {
		got, err := splitWords(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `a\`, `a | b`, `a; b`, `$HOME`, `a > f`, "\"$x\"", "`x`", "a*"} {
		if got, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q) = %q, want an error", bad, got)
		}
	}
}

func TestReceiverCommand(t *testing.T) {
	for _, c := range []struct {
		ssh, host string
		want      []string
	}{
		{"ssh", "h1", []string{"ssh", "h1", "xl", "migrate-receive"}},
		{"ssh -p 22", "root@h1", []string{"ssh", "-p", "22", "root@h1", "xl", "migrate-receive"}},
		{"env", "XENO_STATE_DIR=/s", []string{"env", "XENO_STATE_DIR=/s", "xl", "migrate-receive"}},
		// -s "": HOST is the whole command, as in xl.
		{"", "/bin/xl migrate-receive", []string{"/bin/xl", "migrate-receive"}},
	} {
		got, err := receiverCommand(c.ssh, c.host)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("receiverCommand(%q, %q) = %q, %v; want %q", c.ssh, c.host, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"", ""}, {"ssh", ""}, {"  ", "h"}, {"ssh 'x", "h"}} {
		if got, err := receiverCommand(c[0], c[1]); err == nil {
			t.Errorf("receiverCommand(%q, %q) = %q, want an error", c[0], c[1], got)
		}
	}
}

// Usage errors name the command and exit 2, before anything is touched.
func TestSaveRestoreMigrateUsage(t *testing.T) {
	t.Setenv("XENO_STATE_DIR", filepath.Join(t.TempDir(), "state"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"save"}, "xl save: want DOM FILE [CFG]"},
		{[]string{"save", "d"}, "xl save: want DOM FILE [CFG]"},
		{[]string{"save", "d", "f", "c", "x"}, "xl save: want DOM FILE [CFG]"},
		{[]string{"save", "-c", "-p", "d", "f"}, "xl save: -c (the domain runs on) and -p (it stays paused) exclude each other"},
		{[]string{"save", "-x", "d", "f"}, "xl save: unknown option -x"},
		{[]string{"restore"}, "xl restore: want [CFG] FILE"},
		{[]string{"restore", "a", "b", "c"}, "xl restore: want [CFG] FILE"},
		{[]string{"restore", "--live", "f"}, "xl restore: unknown option --live"},
		{[]string{"migrate", "d"}, "xl migrate: want DOM HOST"},
		{[]string{"migrate", "-s"}, "xl migrate: option -s needs a value"},
		{[]string{"migrate", "-s", "ssh | tee", "d", "h"}, "xl migrate: -s \"ssh | tee\": '|' needs a shell"},
		{[]string{"migrate", "-s", "", "d", ""}, "xl migrate: HOST \"\""},
		{[]string{"migrate-receive", "x"}, "xl migrate-receive: no arguments expected"},
	} {
		_, e, code := run(c.args...)
		if code != 2 || !strings.Contains(e, c.want) || !strings.Contains(e, "usage: xl "+c.args[0]) {
			t.Errorf("xl %q: exit %d, stderr %q; want 2 and %q", c.args, code, e, c.want)
		}
	}
	if _, err := os.Stat(os.Getenv("XENO_STATE_DIR")); err == nil {
		t.Error("a usage error made the state directory")
	}
}

// Refusals that need no domain: a missing domain, a file that is no
// snapshot. Each says why, and nothing is recorded.
func TestSaveRestoreRefusals(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XENO_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("XENO_HV", filepath.Join(dir, "no-hv"))
	junk := filepath.Join(dir, "junk.snap")
	if err := os.WriteFile(junk, []byte("not a snapshot at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"save", "nope", filepath.Join(dir, "s")}, "xl save: toolstack: domain nope does not exist"},
		{[]string{"migrate", "-s", "", "nope", "true"}, "xl migrate: toolstack: domain nope does not exist"},
		{[]string{"restore", junk}, "bad magic"},
		{[]string{"restore", filepath.Join(dir, "missing.snap")}, "no such file"},
		{[]string{"restore", dir}, "not a regular file"},
	} {
		_, e, code := run(c.args...)
		if code != 1 || !strings.Contains(e, c.want) || !strings.HasPrefix(e, "xl "+c.args[0]+": ") && !strings.Contains(e, "\nxl "+c.args[0]+": ") {
			t.Errorf("xl %q: exit %d, stderr %q; want 1 and %q", c.args, code, e, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s")); err == nil {
		t.Error("a refused save left its file")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "state", "domains"))
	if len(ents) != 0 {
		t.Errorf("refusals left %d domain directories", len(ents))
	}
}
