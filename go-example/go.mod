module supergo/go-example

go 1.19
