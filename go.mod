module github.com/xeno-hv/xeno

go 1.26
