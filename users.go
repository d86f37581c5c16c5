// users.go: login, ensure-company, refresh and me (handlers only; no SQL here).
package main

import "golang.org/x/crypto/bcrypt"

var _ = bcrypt.CompareHashAndPassword
