package xl

import "fmt"

// queryCmd asks a running guest's xeno-init over vsock, not the console.
func queryCmd(io IO, args []string) error {
	pos, err := flags(args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want DOM and a request (interface or health)")
	}
	ts, err := open()
	if err != nil {
		return err
	}
	ans, err := ts.Query(pos[0], pos[1])
	if err != nil {
		return err
	}
	fmt.Fprintln(io.Stdout, ans)
	return nil
}
