package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/xeno-hv/xeno/builder"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

const kernelUsage = `usage: xeno kernel COMMAND [ARGS]

  fetch PACKAGE[=VERSION]     apt-get download a linux-image package and import it
  build RECIPE [--interface I] [--workdir DIR] [-j N]
                              build the recipe's kernel.source kernel into the store
                              (a cache hit when built before); --workdir builds cold
                              in DIR outside the store, for comparing bytes
  import FILE                 import a linux-image .deb or a bare bzImage
  list [--json]               list the stored kernels
  inspect NAME|FILE [--json]  show a kernel's boot header, payload, Xen notes and config
  verify [NAME...]            rehash every stored file (all kernels by default)
  modules NAME MODULE...      the .ko files MODULE needs, dependencies first

NAME is a release (uname -r), a package name, PACKAGE=VERSION or a sha256
prefix. The store is $XENO_CACHE, else $XDG_CACHE_HOME/xeno, else ~/.cache/xeno;
every command takes -cache DIR to override it.
`

func kernelCmd(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, kernelUsage)
		return errors.New("kernel: missing command")
	}
	cmds := map[string]func([]string) error{
		"fetch": kernelFetch, "build": kernelBuild, "import": kernelImport, "list": kernelList, "inspect": kernelInspect,
		"verify": kernelVerify, "modules": kernelModules,
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Print(kernelUsage)
		return nil
	}
	fn, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(os.Stderr, kernelUsage)
		return fmt.Errorf("kernel: unknown command %q", args[0])
	}
	return fn(args[1:])
}

// kernelFlags makes a subcommand's flag set with the shared -cache flag.
func kernelFlags(name string, cache *string) *flag.FlagSet {
	fs := flag.NewFlagSet("kernel "+name, flag.ContinueOnError)
	fs.StringVar(cache, "cache", kernels.DefaultCacheDir(), "kernel store directory (env XENO_CACHE)")
	return fs
}

// parseArgs parses flags wherever they appear, so that both
// `inspect --json NAME` and `inspect NAME --json` work, and wants exactly
// nargs positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, nargs int, what string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != nargs {
		return nil, fmt.Errorf("%s: want %s", fs.Name(), what)
	}
	return pos, nil
}

func kernelFetch(args []string) error {
	var cache string
	fs := kernelFlags("fetch", &cache)
	pos, err := parseArgs(fs, args, 1, "one PACKAGE[=VERSION]")
	if err != nil {
		return err
	}
	pkg, version, _ := strings.Cut(pos[0], "=")
	s, err := kernels.Open(cache)
	if err != nil {
		return err
	}
	s.Progress = progress()
	k, err := s.Fetch(pkg, version)
	if err != nil {
		return err
	}
	printStored(k)
	return nil
}

func kernelBuild(args []string) error {
	o := builder.Options{Log: os.Stderr}
	var ko builder.KernelOptions
	fs := builderFlags("kernel build", &o)
	fs.StringVar(&ko.Interface, "interface", "", "build for this interface instead of the recipe's (e.g. 1.3-dev)")
	fs.StringVar(&ko.WorkDir, "workdir", "", "build cold in this directory, outside the store, and leave the result in DIR/out")
	fs.IntVar(&ko.Jobs, "j", 0, "make jobs (default: CPUs + 1)")
	verbose := fs.Bool("v", false, "show make's output")
	r, err := parseRecipeArgs(fs, args)
	if err != nil {
		return err
	}
	o.Recipe = r
	o.Progress = !*verbose
	ko.Progress = progress()
	// Ctrl-C stops make and its compilers; nothing is left under a final
	// name, because the store takes a kernel in by rename.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k, err := builder.BuildKernel(ctx, o, ko)
	if err != nil {
		return err
	}
	where := "stored"
	if ko.WorkDir != "" {
		where = "built in " + k.Dir() + ":"
	}
	fmt.Printf("%s %s (built from %s for interface %s) sha256 %s\n", where, k.Release, k.Source, k.Interface, k.SHA256)
	return nil
}

func kernelImport(args []string) error {
	var cache string
	fs := kernelFlags("import", &cache)
	pos, err := parseArgs(fs, args, 1, "one FILE (.deb or bzImage)")
	if err != nil {
		return err
	}
	s, err := kernels.Open(cache)
	if err != nil {
		return err
	}
	s.Progress = progress()
	isDeb, err := looksLikeDeb(pos[0])
	if err != nil {
		return err
	}
	var k *kernels.Kernel
	if isDeb {
		k, err = s.ImportDeb(pos[0])
	} else {
		k, err = s.ImportBzImage(pos[0])
	}
	if err != nil {
		return err
	}
	printStored(k)
	return nil
}

// progress shows the store's long steps as a bar on a terminal and as
// one log line per step otherwise.
func progress() func(what string, done, total int64) {
	var cur string
	var bar *progressbar.ProgressBar
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	return func(what string, done, total int64) {
		if what != cur {
			if bar != nil {
				bar.Finish()
				bar = nil
			}
			cur = what
			if !tty || total == 0 {
				fmt.Fprintf(os.Stderr, "xeno: %s\n", what)
			} else {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription(what), progressbar.OptionShowBytes(!strings.HasPrefix(what, "make")), progressbar.OptionShowCount(),
					progressbar.OptionClearOnFinish())
			}
		}
		if bar != nil {
			bar.Set64(done)
			if done >= total {
				bar.Finish()
				bar = nil
			}
		}
	}
}

func printStored(k *kernels.Kernel) {
	from := "bare bzImage"
	if k.Package != "" {
		from = k.Package + " " + k.Version
	}
	fmt.Printf("stored %s (%s, %d modules) sha256 %s\n", k.Release, from, k.Modules, k.SHA256)
}

// looksLikeDeb tells a .deb from a bzImage by the ar magic, whatever the
// file is called.
func looksLikeDeb(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 8)
	n, _ := io.ReadFull(f, b)
	return string(b[:n]) == "!<arch>\n", nil
}

func kernelList(args []string) error {
	var cache string
	fs := kernelFlags("list", &cache)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	s, err := kernels.Open(cache)
	if err != nil {
		return err
	}
	list, err := s.List()
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(list)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RELEASE\tPACKAGE VERSION\tSIZE\tPROTOCOL\tCOMPRESSION\tMODULES\tSHA256")
	for _, k := range list {
		version := k.Version
		if version == "" {
			version = "(bare bzImage)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%.12s\n", k.Release, version, humanSize(int64(k.Size)), k.Protocol, k.Compression, k.Modules, k.SHA256)
	}
	return w.Flush()
}

func kernelVerify(args []string) error {
	var cache string
	fs := kernelFlags("verify", &cache)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := kernels.Open(cache)
	if err != nil {
		return err
	}
	var list []*kernels.Kernel
	if fs.NArg() == 0 {
		if list, err = s.List(); err != nil {
			return err
		}
	}
	for _, name := range fs.Args() {
		k, err := s.Get(name)
		if err != nil {
			return err
		}
		list = append(list, k)
	}
	bad := 0
	for _, k := range list {
		if err := k.VerifyAll(); err != nil {
			fmt.Fprintf(os.Stderr, "xeno: %v\n", err)
			bad++
			continue
		}
		fmt.Printf("ok %s %.12s (bzImage, config, %d modules)\n", k.Release, k.SHA256, k.Modules)
	}
	if bad > 0 {
		return fmt.Errorf("kernel verify: %d of %d kernels damaged", bad, len(list))
	}
	return nil
}

func kernelModules(args []string) error {
	var cache string
	fs := kernelFlags("modules", &cache)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return errors.New("kernel modules: want NAME and at least one MODULE")
	}
	s, err := kernels.Open(cache)
	if err != nil {
		return err
	}
	k, err := s.Get(fs.Arg(0))
	if err != nil {
		return err
	}
	if k.ModulesDir() == "" {
		return fmt.Errorf("kernel modules: %s has no modules (imported as a bare bzImage)", k.Release)
	}
	paths, err := k.ModuleClosure(fs.Args()[1:])
	if err != nil {
		return err
	}
	for _, p := range paths {
		rel, err := filepath.Rel(k.ModulesDir(), p)
		if err != nil {
			return err
		}
		fmt.Println(filepath.ToSlash(rel))
	}
	return nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// inspection is what `kernel inspect` reports, as text or JSON.
type inspection struct {
	File        string               `json:"file"`
	Stored      *kernels.Kernel      `json:"stored,omitempty"`
	SHA256      string               `json:"sha256"`
	Size        int                  `json:"size"`
	Protocol    string               `json:"protocol"`
	Header      *kformat.SetupHeader `json:"setup_header"`
	LoadFlags   []string             `json:"loadflags"`
	XLoadFlags  []string             `json:"xloadflags"`
	Entry64     bool                 `json:"entry_64"`
	Compression kformat.Compression  `json:"compression"`
	ELF         *kformat.ELFInfo     `json:"vmlinux,omitempty"`
	ELFError    string               `json:"vmlinux_error,omitempty"`
	Config      map[string]string    `json:"config,omitempty"`
	Needs       []kernels.Need       `json:"needs,omitempty"`
	configFrom  string
}

func kernelInspect(args []string) error {
	var cache string
	fs := kernelFlags("inspect", &cache)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args, 1, "one NAME or FILE")
	if err != nil {
		return err
	}
	var in *inspection
	if st, err := os.Stat(pos[0]); err == nil && st.Mode().IsRegular() {
		in, err = inspectFile(pos[0])
		if err != nil {
			return err
		}
	} else {
		s, err := kernels.Open(cache)
		if err != nil {
			return err
		}
		if in, err = inspectStored(s, pos[0]); err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(in)
	}
	return in.print(os.Stdout)
}

func inspectStored(s *kernels.Store, name string) (*inspection, error) {
	k, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	bz, err := k.BzImage()
	if err != nil {
		return nil, err
	}
	in, err := inspectBzImage(k.BzImagePath(), bz, false)
	if err != nil {
		return nil, err
	}
	in.Stored = k
	if info, err := k.ELF(); err != nil {
		in.ELFError = err.Error()
	} else {
		in.ELF = info
	}
	cfg, err := k.Config()
	if err != nil {
		return nil, err
	}
	in.setConfig(cfg, k.ConfigPath())
	return in, nil
}

// inspectFile inspects a bzImage or a .deb without importing it.
func inspectFile(p string) (*inspection, error) {
	isDeb, err := looksLikeDeb(p)
	if err != nil {
		return nil, err
	}
	if !isDeb {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		return inspectBzImage(p, b, true)
	}
	bf, err := kernels.ReadBoot(p)
	if err != nil {
		return nil, err
	}
	in, err := inspectBzImage(p+":"+bf.KernelPath, bf.Kernel, true)
	if err != nil {
		return nil, err
	}
	if bf.Config != nil {
		c, err := kernels.ParseConfig(p+":"+bf.ConfigPath, bf.Config)
		if err != nil {
			return nil, err
		}
		in.setConfig(c, p+":"+bf.ConfigPath)
	}
	return in, nil
}

func inspectBzImage(name string, b []byte, withELF bool) (*inspection, error) {
	k, h, err := kernels.Describe(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	in := &inspection{
		File:        name,
		SHA256:      k.SHA256,
		Size:        len(b),
		Protocol:    k.Protocol,
		Header:      h,
		LoadFlags:   kformat.LoadFlagNames(h.LoadFlags),
		XLoadFlags:  kformat.XLoadFlagNames(h.XLoadFlags),
		Entry64:     h.XLoadFlags&kformat.XLFKernel64 != 0,
		Compression: k.Compression,
	}
	if withELF {
		// Decompressing is cheap (well under a second), and the Xen notes
		// live only in the ELF.
		if v, err := kformat.Decompress(b); err != nil {
			in.ELFError = err.Error()
		} else if info, err := kformat.ParseELF(v); err != nil {
			in.ELFError = err.Error()
		} else {
			in.ELF = info
		}
	}
	return in, nil
}

func (in *inspection) setConfig(c kernels.Config, from string) {
	if c == nil {
		return
	}
	in.Config = map[string]string{}
	for _, opt := range kernels.HypervisorOptions {
		in.Config[opt] = c.State(opt)
	}
	in.configFrom = from
	in.Needs = c.Needs()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (in *inspection) print(out io.Writer) error {
	h := in.Header
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	if k := in.Stored; k != nil {
		row("release", "%s", k.Release)
		if k.Package != "" {
			row("package", "%s %s (%s)", k.Package, k.Version, k.Architecture)
			row("deb sha256", "%s", k.DebSHA256)
		}
		if d := k.ModulesDir(); d != "" {
			row("modules", "%d in %s", k.Modules, d)
		}
	} else {
		row("release", "%s", h.Release())
	}
	row("file", "%s", in.File)
	row("sha256", "%s", in.SHA256)
	row("size", "%d bytes", in.Size)
	row("banner", "%s", h.KernelVersion)
	row("boot protocol", "%s", in.Protocol)
	row("setup_sects", "%d (protected-mode code at file offset %#x)", h.SetupSects, h.SetupLen())
	row("loadflags", "%#02x %s", h.LoadFlags, strings.Join(in.LoadFlags, " "))
	row("xloadflags", "%#04x %s", h.XLoadFlags, strings.Join(in.XLoadFlags, " "))
	row("64-bit entry", "%s (startup_64 at load address + 0x200)", yesNo(in.Entry64))
	row("relocatable", "%s", yesNo(h.RelocatableKernel))
	row("kernel_alignment", "%#x (min_alignment 2^%d)", h.KernelAlignment, h.MinAlignment)
	row("pref_address", "%#x", h.PrefAddress)
	row("init_size", "%#x (%.1f MiB)", h.InitSize, float64(h.InitSize)/(1<<20))
	row("cmdline_size", "%d", h.CmdlineSize)
	row("initrd_addr_max", "%#x", h.InitrdAddrMax)
	row("handover_offset", "%#x", h.HandoverOffset)
	row("payload", "%s, %d bytes at file offset %#x", in.Compression, h.PayloadLength, h.SetupLen()+int(h.PayloadOffset))
	if in.ELF != nil {
		row("vmlinux entry", "%#x", in.ELF.Entry)
		for _, s := range in.ELF.Segments {
			row("  PT_LOAD", "paddr %#x vaddr %#x offset %#x filesz %#x memsz %#x %s", s.Paddr, s.Vaddr, s.Offset, s.Filesz, s.Memsz, s.Flags)
		}
		for _, n := range in.ELF.XenNotes {
			row("  Xen note", "%-18s %s", n.Name, n)
		}
	} else if in.ELFError != "" {
		row("vmlinux", "not decoded: %s", in.ELFError)
	}
	if in.Config != nil {
		row("config", "%s", in.configFrom)
		for _, opt := range kernels.HypervisorOptions {
			row("  CONFIG_"+opt, "%s", in.Config[opt])
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(in.Needs) > 0 {
		fmt.Fprintln(out, "needs (from the config):")
		for _, n := range in.Needs {
			fmt.Fprintf(out, "  - %s (%s)\n", n.What, n.Because)
		}
	}
	return nil
}
