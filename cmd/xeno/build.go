package main

import "errors"

// Owned by the builder work: replaced by the real commands.
func lockCmd(args []string) error   { return errors.New("lock: not implemented yet") }
func buildCmd(args []string) error  { return errors.New("build: not implemented yet") }
func verifyCmd(args []string) error { return errors.New("verify: not implemented yet") }
