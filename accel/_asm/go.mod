module github.com/gopeft/gopeft/accel/_asm

go 1.26.0
