package images

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// reproOutputs are the files writeAllOutputs makes.
var reproOutputs = []string{"initrd.none", "initrd.gzip", "initrd.zstd", "disk.img", "xeno.iso"}

// writeAllOutputs writes every kind of output into dir.
func writeAllOutputs(t *testing.T, dir string) {
	tree := sampleTree(t)
	for _, c := range []Compression{None, Gzip, Zstd} {
		err := atomicfile.Write(filepath.Join(dir, "initrd."+string(c)), 0o644, func(f *os.File) error {
			return WriteInitramfs(f, tree, c, testEpoch)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	spec := testSpec(t)
	if err := WriteRawEFI(filepath.Join(dir, "disk.img"), spec); err != nil {
		t.Fatal(err)
	}
	if err := WriteISO(filepath.Join(dir, "xeno.iso"), spec); err != nil {
		t.Fatal(err)
	}
}

// TestReproducibleHelper is the child process of TestReproducible; it
// does nothing unless that test started it.
func TestReproducibleHelper(t *testing.T) {
	out := os.Getenv("XENO_IMAGES_REPRO_OUT")
	if out == "" {
		t.Skip("helper process for TestReproducible")
	}
	mask, err := strconv.ParseInt(os.Getenv("XENO_IMAGES_REPRO_UMASK"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	syscallUmask(int(mask))
	writeAllOutputs(t, out)
}

// TestReproducible builds every output twice, in child processes that
// differ in time zone, umask, working directory, output directory and
// wall-clock second, and requires identical bytes.
func TestReproducible(t *testing.T) {
	testSpec(t) // skip early if the bootloaders are missing
	base := t.TempDir()
	runs := []struct{ tz, umask string }{{"UTC", "022"}, {"Pacific/Kiritimati", "077"}}
	var dirs []string
	for i, r := range runs {
		dir := filepath.Join(base, "out"+strconv.Itoa(i), "nested")
		cwd := filepath.Join(base, "cwd"+strconv.Itoa(i))
		for _, d := range []string{dir, cwd} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // a different wall-clock second
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestReproducibleHelper$", "-test.count=1")
		cmd.Dir = cwd
		cmd.Env = append(os.Environ(), "TZ="+r.tz, "XENO_IMAGES_REPRO_OUT="+dir, "XENO_IMAGES_REPRO_UMASK="+r.umask)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %d (TZ=%s umask %s): %v\n%s", i, r.tz, r.umask, err, out)
		}
		dirs = append(dirs, dir)
	}
	for _, name := range reproOutputs {
		a, errA := os.ReadFile(filepath.Join(dirs[0], name))
		b, errB := os.ReadFile(filepath.Join(dirs[1], name))
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v %v", name, errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the two builds", name)
		}
		st, err := os.Stat(filepath.Join(dirs[1], name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v under umask 077, want 0644", name, st.Mode().Perm())
		}
	}
}

// TestInputsChangeOutputs guards against a reproducibility that comes from
// ignoring inputs: the seed must change the identifiers and the epoch the
// dates.
func TestInputsChangeOutputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mod func(*BootSpec)) ([]byte, []byte) {
		spec := testSpec(t)
		mod(&spec)
		raw, iso := filepath.Join(dir, name+".img"), filepath.Join(dir, name+".iso")
		if err := WriteRawEFI(raw, spec); err != nil {
			t.Fatal(err)
		}
		if err := WriteISO(iso, spec); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(raw)
		b, _ := os.ReadFile(iso)
		return a, b
	}
	raw0, iso0 := write("base", func(*BootSpec) {})
	raw1, iso1 := write("seed", func(s *BootSpec) { s.Seed = "another seed" })
	raw2, iso2 := write("epoch", func(s *BootSpec) { s.Epoch = s.Epoch.Add(48 * time.Hour) })
	if bytes.Equal(raw0, raw1) || bytes.Equal(iso0, iso1) {
		t.Error("changing the seed did not change the images")
	}
	if bytes.Equal(raw0, raw2) || bytes.Equal(iso0, iso2) {
		t.Error("changing the epoch did not change the images")
	}
	if deriveGUID("a", "gpt-disk") == deriveGUID("a", "gpt-esp") {
		t.Error("the disk and partition GUIDs are the same")
	}
}
