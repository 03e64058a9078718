# vendored dependency (demo)
greet() { echo "hello, $1"; }
