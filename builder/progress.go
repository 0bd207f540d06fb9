package builder

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows the build's steps (fetch, compile, compress, each image
// write) as a bar on a terminal and as log lines otherwise.
type progress struct {
	o   Options
	bar *progressbar.ProgressBar
}

func newProgress(o *Options, steps int) *progress {
	p := &progress{o: *o}
	if o.Progress && o.Log != nil && term.IsTerminal(int(os.Stderr.Fd())) {
		p.bar = progressbar.NewOptions(steps,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("build"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish())
		// Log lines go above the bar: clear it, write, draw it again.
		o.Log = &aboveBar{bar: p.bar, w: o.Log}
	}
	return p
}

type aboveBar struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func (a *aboveBar) Write(b []byte) (int, error) {
	a.bar.Clear()
	n, err := a.w.Write(b)
	a.bar.RenderBlank()
	return n, err
}

func (p *progress) step(what string) {
	if p.bar != nil {
		p.bar.Describe(what)
		p.bar.Add(1)
		return
	}
	p.o.logf("build: %s", what)
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
