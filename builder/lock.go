package builder

import (
	"fmt"
	"path/filepath"

	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/recipes"
)

// Lock resolves the recipe to exact inputs and writes RECIPE.lock. Every
// .deb is downloaded and hashed: the sha256 the recipe pins must be the
// one of the file apt hands over, so a lock never records a hash nobody
// checked.
func Lock(o Options) (*recipes.Lock, error) {
	t, err := resolve(o)
	if err != nil {
		return nil, err
	}
	r := t.recipe
	l := &recipes.Lock{
		GoVersion: t.goVersion,
		HVRelease: t.build.Release.String(),
		HVBuildID: t.build.BuildID,
		Interface: t.iface.String(),
	}
	for _, d := range r.Debs() {
		o.logf("lock: fetching %s=%s", d.Name, d.Version)
		_, sha, err := debs.Fetch(o.CacheDir, d.Name, d.Version, "")
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line(d.Key), err)
		}
		if sha != d.SHA256 {
			return nil, fmt.Errorf("%s:%d: %s=%s: recipe pins sha256 %s, the downloaded .deb has %s", r.Path, r.Line(d.Key+".sha256"), d.Name, d.Version, d.SHA256, sha)
		}
		l.Inputs = append(l.Inputs, recipes.LockInput{Kind: "deb", Name: d.Name, Version: d.Version, SHA256: sha})
	}
	file := recipes.LockPath(r.Path)
	if err := l.WriteFile(file); err != nil {
		return nil, err
	}
	l.Path = file
	o.logf("lock: wrote %s (%d inputs, %s, hv %s, interface %s)", filepath.Base(file), len(l.Inputs), l.GoVersion, l.HVRelease, l.Interface)
	return l, nil
}
