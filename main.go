// main.go: run() wires config → logger → store → handler → server → drain; routes() is
// the one table of every route.
package main

func main() {}
