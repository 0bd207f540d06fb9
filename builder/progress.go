package builder

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows the build's steps as a bar on a terminal and as log
// lines otherwise.
type progress struct {
	o   Options
	bar *progressbar.ProgressBar
}

func newProgress(o Options, steps int) *progress {
	p := &progress{o: o}
	if o.Progress && term.IsTerminal(int(os.Stderr.Fd())) {
		p.bar = progressbar.NewOptions(steps,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("build"),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish())
	}
	return p
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
