#!/usr/bin/env python3
"""Extract the prose of chapters of "The Rust Programming Language" into corpus.txt.

Source: the HTML build of the book that the Rust toolchain installs with its documentation
(see README.md for the exact path, version and license). Only the Python standard library is
used, so the corpus can be regenerated anywhere the same toolchain docs are installed:

    /usr/bin/python3 reference/data/extract_corpus.py [BOOK_HTML_DIR] > reference/data/corpus.txt

What is kept: the text of headings (h1-h4), paragraphs and list items inside <main>, in
document order, with inline markup (emphasis, inline code, links) reduced to its text. The
book hard-wraps its source lines; each paragraph is re-joined into one line. Paragraphs are
separated by a blank line.

What is dropped: code listings (<pre>), listing captions (<figcaption>), the sidebar, navigation
and page scripts. Nothing is rewritten.
"""
import html.parser
import os
import sys

DEFAULT_DIR = os.path.expanduser(
    "~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book"
)

# The introduction and chapters 1-8, in book order. The same directory also holds
# one-line redirect pages from older chapter numbers; they have no <main> and are not listed.
CHAPTERS = [
    "ch00-00-introduction.html",
    "ch01-00-getting-started.html",
    "ch01-01-installation.html",
    "ch01-02-hello-world.html",
    "ch01-03-hello-cargo.html",
    "ch02-00-guessing-game-tutorial.html",
    "ch03-00-common-programming-concepts.html",
    "ch03-01-variables-and-mutability.html",
    "ch03-02-data-types.html",
    "ch03-03-how-functions-work.html",
    "ch03-04-comments.html",
    "ch03-05-control-flow.html",
    "ch04-00-understanding-ownership.html",
    "ch04-01-what-is-ownership.html",
    "ch04-02-references-and-borrowing.html",
    "ch04-03-slices.html",
    "ch05-00-structs.html",
    "ch05-01-defining-structs.html",
    "ch05-02-example-structs.html",
    "ch05-03-method-syntax.html",
    "ch06-00-enums.html",
    "ch06-01-defining-an-enum.html",
    "ch06-02-match.html",
    "ch06-03-if-let.html",
    "ch07-00-managing-growing-projects-with-packages-crates-and-modules.html",
    "ch07-01-packages-and-crates.html",
    "ch07-02-defining-modules-to-control-scope-and-privacy.html",
    "ch07-03-paths-for-referring-to-an-item-in-the-module-tree.html",
    "ch07-04-bringing-paths-into-scope-with-the-use-keyword.html",
    "ch07-05-separating-modules-into-different-files.html",
    "ch08-00-common-collections.html",
    "ch08-01-vectors.html",
    "ch08-02-strings.html",
    "ch08-03-hash-maps.html",
]

BLOCKS = {"h1", "h2", "h3", "h4", "p", "li"}
SKIP = {"pre", "figcaption", "script", "style", "nav"}


class Prose(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main = False
        self.skip_depth = 0
        self.block_depth = 0
        self.current = []
        self.paragraphs = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.in_main = True
        if not self.in_main:
            return
        if tag in SKIP:
            self.skip_depth += 1
        elif tag in BLOCKS:
            # A list item that contains a paragraph: flush the item's own text first.
            self.flush()
            self.block_depth += 1

    def handle_endtag(self, tag):
        if not self.in_main:
            return
        if tag == "main":
            self.flush()
            self.in_main = False
        elif tag in SKIP:
            self.skip_depth -= 1
        elif tag in BLOCKS:
            self.flush()
            self.block_depth = max(0, self.block_depth - 1)

    def handle_data(self, data):
        if self.in_main and self.skip_depth == 0 and self.block_depth > 0:
            self.current.append(data)

    def flush(self):
        text = " ".join("".join(self.current).split())
        if text:
            self.paragraphs.append(text)
        self.current = []


def main():
    book = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR
    out = []
    for name in CHAPTERS:
        with open(os.path.join(book, name), encoding="utf-8") as f:
            parser = Prose()
            parser.feed(f.read())
            parser.close()
        if not parser.paragraphs:
            sys.exit(f"{name}: no prose found inside <main>")
        out.extend(parser.paragraphs)
    sys.stdout.write("\n\n".join(out) + "\n")


if __name__ == "__main__":
    main()
