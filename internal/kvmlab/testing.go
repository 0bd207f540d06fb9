package kvmlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// Need returns "" when tests may use /dev/kvm directly, and otherwise
// says why they run in the lab. It skips the test when neither works.
func Need(t testing.TB) (why string) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return ""
	}
	if testing.Short() {
		t.Skipf("no /dev/kvm (%v) and -short: the nested-KVM lab takes a minute", err)
	}
	testenv.RequireCmd(t, "qemu-system-x86_64")
	return fmt.Sprintf("no /dev/kvm here (%v): running hv inside QEMU TCG with emulated AMD-V (internal/kvmlab)", err)
}

// labRun is Run for a test: hv and xl from XENO_BIN, a bound, and any
// failure of the lab itself fails the test with the console's tail.
func labRun(t testing.TB, spec Spec, bound time.Duration) *Result {
	t.Helper()
	spec.HV, spec.XL = testenv.Bin(t, "hv"), testenv.Bin(t, "xl")
	spec.Recipe = kerneltest.MinimalRecipe()
	if spec.Idle == 0 {
		spec.Idle = 5 * time.Minute // no lab script here is silent that long
	}
	defer testenv.Heavy(t)()
	res, err := RunAgainIfDead(bound, spec, func(res *Result, err error) {
		t.Logf("kvmlab: the lab machine failed (%v); running it once more. Its console:\n%s", err, failedConsole(res.Console, 25))
	})
	if err != nil {
		console := ""
		if res != nil {
			console = failedConsole(res.Console, 60)
		}
		t.Fatalf("%v; console:\n%s", err, console)
	}
	return res
}

// guestCmdline is GuestCmdline for a test.
func guestCmdline(t testing.TB) string {
	c, err := GuestCmdline()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Boot is one hv run: a kernel and initramfs from this machine's files.
type Boot struct {
	Name           string
	Kernel, Initrd string
	Cmdline        string
	Args           []string // more hv flags
	HV             string   // the hv binary, if not XENO_BIN's
}

// Booted is how a Boot went: hv's console and log (testenv.Untangle'd),
// and its exit code.
type Booted struct {
	Output string
	Exit   int
}

const bootBound = 240 * time.Second

// BootAll runs each boot under hv, one after another: directly where
// /dev/kvm opens, else all in one lab (adding GuestCmdline). why is
// Need's answer, "" for direct.
func BootAll(t testing.TB, why string, boots []Boot) map[string]*Booted {
	t.Helper()
	out := map[string]*Booted{}
	if why == "" {
		for _, b := range boots {
			ctx, cancel := context.WithTimeout(context.Background(), bootBound)
			args := append([]string{"--kernel", b.Kernel, "--initrd", b.Initrd, "--cmdline", b.Cmdline}, b.Args...)
			hv := b.HV
			if hv == "" {
				hv = testenv.Bin(t, "hv")
			}
			cmd := exec.CommandContext(ctx, hv, args...)
			o, err := cmd.CombinedOutput()
			cancel()
			code := cmd.ProcessState.ExitCode()
			if err != nil && code < 0 {
				t.Fatalf("%s: hv: %v\n%s", b.Name, err, o)
			}
			out[b.Name] = &Booted{Output: testenv.Untangle(string(o)), Exit: code}
		}
		return out
	}
	t.Log(why)
	out = labBootsInGroups(t, boots)
	for try := 1; try < LostBootTries; try++ {
		var again []Boot
		for _, b := range boots {
			if lostBoot(out[b.Name].Output) {
				again = append(again, b)
			}
		}
		if len(again) == 0 {
			break
		}
		// Measured in the lab only (lostBoot): such a boot runs again,
		// up to LostBootTries in all; any other failure stands.
		t.Logf("kvmlab: %d boot(s) were lost before init (a triple fault or a dead timer), a known fault of the nested lab; running them again", len(again))
		for name, b := range labBootsInGroups(t, again) {
			out[name] = b
		}
	}
	return out
}

// LostBootTries is how many times a test runs a Linux boot that the lab
// lost before init (lostBoot; test/xl's lifecycle scripts have their own
// pattern): CI (2026-12-01) lost both runs of one lifecycle script, the
// second to an early-boot triple fault, with about one boot in fifty lost.
const LostBootTries = 3

// lostBoot is the lab's known fault, seen only there: a boot that never
// reached init after a triple fault (first seen while Linux brought up the
// other vCPUs; since also with 1 vCPU, 2-3 s into boot: test/versions'
// "1.1 on 1.3.0-dev other" cell did it in CI and passed 3 of 3 alone in
// a lab after), or after "APIC timer disabled due to
// verification failure" (the LAPIC timer measured against PIT jiffies
// while TCG was starved), or that bootBound's SIGTERM ended short of init:
// the guest went silent for good early in boot (CI, 2026-12-02: at 2.1 s,
// after "Last level dTLB entries", until the bound; once before at 3 s in
// ACPI's PCI set-up), the form test/xl's lifecycle scripts already count
// as lost (bootLost). Lab guests get no_timer_check (GuestCmdline), and
// a boot without IRQ 0 ticks is TestXenoKernelBoots' failure, never a
// rerun: that was the hv's own IRQ 0 routing (docs/kvm-notes.md).
func lostBoot(out string) bool {
	if strings.Contains(out, "Run /init") {
		return false
	}
	return strings.Contains(out, "triple fault (KVM_EXIT_SHUTDOWN)") ||
		strings.Contains(out, "APIC timer disabled due to verification failure") ||
		strings.Contains(out, "hv: terminated: destroying the domain")
}

// bootsPerLab bounds the Linux boots one lab machine runs: the lab grows
// unreliable with its age (docs/kvm-notes.md). CI saw a 12-boot lab hang
// hard at the start of its fourth boot, and its rerun hang at the same
// boot; a fresh lab costs about 20 s.
const bootsPerLab = 3

// labBootsInGroups runs boots in fresh labs of at most bootsPerLab each,
// so that a dead lab's rerun (labRun) repeats only its own few boots.
func labBootsInGroups(t testing.TB, boots []Boot) map[string]*Booted {
	t.Helper()
	out := map[string]*Booted{}
	for len(boots) > 0 {
		n := min(bootsPerLab, len(boots))
		for name, b := range labBoots(t, boots[:n]) {
			out[name] = b
		}
		boots = boots[n:]
	}
	return out
}

// labBoots runs boots one after another in one lab.
func labBoots(t testing.TB, boots []Boot) map[string]*Booted {
	t.Helper()
	out := map[string]*Booted{}
	spec := Spec{Files: map[string][]byte{}}
	var script strings.Builder
	// Each file goes in once, however many boots use it.
	inLab := map[string]string{}
	put := func(from string) string {
		if p, ok := inLab[from]; ok {
			return p
		}
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatalf("kvmlab: %v", err)
		}
		p := fmt.Sprintf("/g/%d.%s", len(inLab), filepath.Base(from))
		spec.Files[p], inLab[from] = data, p
		return p
	}
	for i, b := range boots {
		hv := "hv"
		if b.HV != "" {
			hv = put(b.HV)
		}
		args := []string{"--kernel", put(b.Kernel), "--initrd", put(b.Initrd), "--cmdline", shQuote(b.Cmdline + " " + guestCmdline(t))}
		for _, a := range b.Args {
			args = append(args, shQuote(a))
		}
		fmt.Fprintf(&script, "echo 'KVMLAB-BOOT %d'\ntimeout %d %s %s 2>&1\necho \"KVMLAB-BOOT-END %d $?\"\n",
			i, int(bootBound.Seconds()), hv, strings.Join(args, " "), i)
	}
	spec.Script = script.String()
	res := labRun(t, spec, time.Duration(len(boots)+1)*bootBound)
	t.Logf("kvmlab: %d boots in %v", len(boots), res.Elapsed.Round(time.Second))
	for i, b := range boots {
		start := strings.Index(res.Console, fmt.Sprintf("KVMLAB-BOOT %d\n", i))
		endTag := fmt.Sprintf("KVMLAB-BOOT-END %d ", i)
		end := strings.Index(res.Console, endTag)
		if start < 0 || end < start {
			t.Fatalf("kvmlab: boot %s did not run to its end; console:\n%s", b.Name, tail(res.Console, 80))
		}
		bo := &Booted{Output: testenv.Untangle(res.Console[start:end])}
		fmt.Sscanf(res.Console[end+len(endTag):], "%d", &bo.Exit)
		out[b.Name] = bo
	}
	return out
}

// Script runs a POSIX sh script with hv and xl on its PATH, where $G is
// a directory holding files (name -> a file on this machine),
// $XENO_STATE_DIR an empty state directory and $GUEST_EXTRA what a guest's
// command line needs here: directly where /dev/kvm opens, else in the lab.
// It returns what the script printed and its exit code.
//
// A name that is an absolute path puts the file at that path in the lab
// (QEMUFiles uses this); directly, such a file is already in place.
func Script(t testing.TB, why string, files map[string]string, script string) (string, int) {
	t.Helper()
	return ScriptIn(t, why, files, script, 0)
}

// ScriptIn is Script on a lab machine of memMiB (0: the default), for a
// script whose guests together need more than the default lab holds.
func ScriptIn(t testing.TB, why string, files map[string]string, script string, memMiB int) (string, int) {
	t.Helper()
	if why == "" {
		g := t.TempDir()
		for name, from := range files {
			if filepath.IsAbs(name) {
				continue
			}
			if err := os.Symlink(from, filepath.Join(g, name)); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Env = append(os.Environ(), "G="+g, "XENO_STATE_DIR="+t.TempDir(), "GUEST_EXTRA=",
			"PATH="+filepath.Dir(testenv.Bin(t, "hv"))+":"+os.Getenv("PATH"))
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	t.Log(why)
	spec := Spec{Files: map[string][]byte{}, MemoryMiB: memMiB}
	for name, from := range files {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatalf("kvmlab: %v", err)
		}
		if filepath.IsAbs(name) {
			spec.Files[name] = data
		} else {
			spec.Files["/g/"+name] = data
		}
	}
	spec.Script = "export G=/g XENO_STATE_DIR=/tmp/xeno GUEST_EXTRA=" + shQuote(guestCmdline(t)) + "\n" + script
	res := labRun(t, spec, 10*time.Minute)
	t.Logf("kvmlab: script ran in %v", res.Elapsed.Round(time.Second))
	return res.Console, res.Exit
}

// BusyboxInitramfs writes an uncompressed initramfs with the pinned static
// busybox and an /init that runs script under busybox sh, with every
// applet on the PATH.
func BusyboxInitramfs(t testing.TB, script string) string {
	t.Helper()
	bb, err := Busybox(kerneltest.MinimalRecipe())
	if err != nil {
		t.Fatal(err)
	}
	script = "#!/bin/busybox sh\nexport PATH=/bin\n/bin/busybox --install -s /bin\n" + script
	p := filepath.Join(t.TempDir(), "init.cpio")
	err = atomicfile.Write(p, 0o644, func(f *os.File) error {
		return images.WriteInitramfs(f, []images.File{
			{Path: "bin/busybox", Mode: 0o755, Data: bb},
			{Path: "init", Mode: 0o755, Data: []byte(script)},
		}, images.None, time.Unix(0, 0))
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QEMUFiles are the files that qemu-system-x86_64 needs to boot a Linux
// kernel with -M microvm, at their paths here, for Script: the binary, the
// shared libraries it loads and qboot. So a benchmark can run QEMU with
// -accel kvm next to hv inside the lab, on the same nested KVM.
func QEMUFiles(t testing.TB) map[string]string {
	t.Helper()
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	libs := map[string][]byte{}
	if err := addLibs(libs, qemu); err != nil {
		t.Fatalf("kvmlab: %v", err)
	}
	files := map[string]string{qemu: qemu}
	for p := range libs {
		files[p] = p
	}
	found := false
	for _, fw := range []string{"/usr/share/qemu/bios-microvm.bin", "/usr/share/seabios/bios-microvm.bin"} {
		if _, err := os.Stat(fw); err == nil {
			files[fw], found = fw, true
		}
	}
	if !found {
		t.Fatal("kvmlab: no bios-microvm.bin (qboot) for QEMU's microvm")
	}
	return files
}
