package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xeno-hv/xeno/builder"
)

// builderFlags are the flags lock, build and verify share.
func builderFlags(name string, o *builder.Options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.CacheDir, "cache", defaultCache(), "download and build cache directory (env XENO_CACHE)")
	fs.StringVar(&o.HVRelease, "hv-release", "", "build the hv and xeno-init as this release (must match the recipe's [hv] pin)")
	return fs
}

func defaultCache() string {
	if d := os.Getenv("XENO_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "xeno-cache")
	}
	return filepath.Join(d, "xeno")
}

func oneRecipe(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one RECIPE argument", fs.Name())
	}
	return fs.Arg(0), nil
}

func lockCmd(args []string) error {
	o := builder.Options{Log: os.Stderr}
	fs := builderFlags("lock", &o)
	r, err := oneRecipe(fs, args)
	if err != nil {
		return err
	}
	o.Recipe = r
	_, err = builder.Lock(o)
	return err
}

func buildCmd(args []string) error  { return errors.New("build: not implemented yet") }
func verifyCmd(args []string) error { return errors.New("verify: not implemented yet") }
