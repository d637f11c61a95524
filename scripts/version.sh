#!/bin/sh
# Prints xspan's version for make build, which links it into the binary (-ldflags -X):
#   - in a git clone: git describe --tags --always --dirty (a tag, commits since it and
#     the commit; the short commit alone where there is no tag; -dirty for local changes);
#   - in an archive made by git archive (GitHub's "Download ZIP" too): the VERSION file,
#     which git fills in then (export-subst in .gitattributes);
#   - else nothing: the binary then reports its Go module version, "(devel)".
cd "$(dirname "$0")/.." || exit 0
if v=$(git -c safe.directory="$PWD" describe --tags --always --dirty 2>/dev/null) && [ -n "$v" ]; then
	echo "$v"
	exit 0
fi
v=$(head -n 1 VERSION 2>/dev/null)
case "$v" in
'' | *'$Format'*) ;;
*) echo "$v" ;;
esac
