package initd

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// ConfigPath is where the builder writes the init configuration.
const ConfigPath = "/etc/xeno/init.toml"

// Config is /etc/xeno/init.toml.
type Config struct {
	// Run is the program and arguments to run once the system is up.
	Run []string `toml:"run"`
	// Modules are kernel module files, in the order to load them
	// (dependencies first), as the builder computed from modinfo.
	Modules []string `toml:"modules"`
}

// maxConfig bounds the config file read by PID 1.
const maxConfig = 1 << 20

// ParseConfig reads init.toml; unknown keys are errors, as in recipes.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if len(b) > maxConfig {
		return c, fmt.Errorf("%s: %d bytes, more than %d", ConfigPath, len(b), maxConfig)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, fmt.Errorf("%s: %w", ConfigPath, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return c, fmt.Errorf("%s: unknown key %q", ConfigPath, un[0].String())
	}
	return c, nil
}

// DefaultRun is what runs when neither the command line nor init.toml
// says: an interactive shell.
var DefaultRun = []string{"/bin/sh"}

// Cmdline is what xeno-init takes from /proc/cmdline.
type Cmdline struct {
	// Run from xeno.run=PROG,ARG,...: commas separate the arguments,
	// because the kernel splits its command line at spaces.
	Run []string
	// NoModules from xeno.nomodules: skip loading modules.
	NoModules bool
}

// ParseCmdline reads the xeno.* parameters of a kernel command line.
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, f := range splitCmdline(s) {
		switch {
		case strings.HasPrefix(f, "xeno.run="):
			v := strings.TrimPrefix(f, "xeno.run=")
			if v != "" {
				c.Run = strings.Split(v, ",")
			}
		case f == "xeno.nomodules":
			c.NoModules = true
		}
	}
	return c
}

// splitCmdline splits at spaces outside double quotes, as the kernel
// does, and drops the quotes.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case (r == ' ' || r == '\n' || r == '\t') && !quoted:
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// Command picks what to run: the command line wins over init.toml, which
// wins over DefaultRun.
func Command(cl Cmdline, cfg Config) []string {
	switch {
	case len(cl.Run) > 0:
		return cl.Run
	case len(cfg.Run) > 0:
		return cfg.Run
	}
	return DefaultRun
}
