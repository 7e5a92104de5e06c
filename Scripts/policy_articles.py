#!/usr/bin/env python3
"""Renders the DocC article of every policy from one template and Scripts/policy_articles.json.

Each article has the same shape: a title, a one-paragraph abstract, an Overview that opens with the
paper and the reference implementation, the Parameters, and When to use. The script checks that
every name of the policy catalog (`KVPolicyCatalog.entries` and `.wrappers`) is covered by an
article, that every article opens its Overview with a source (a paper or a reference repository)
and that every article is linked from the catalog's landing page.

Usage: python3 Scripts/policy_articles.py           (write the articles)
       python3 Scripts/policy_articles.py --check   (exit 1 if an article differs from its rendering)
"""
import json, os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DOCC = os.path.join(ROOT, "Sources", "KVCompress", "KVCompress.docc")
DATA = os.path.join(ROOT, "Scripts", "policy_articles.json")
CATALOG = [os.path.join(ROOT, "Sources", "KVCompress", f) for f in ("KVPolicyCatalog.swift", "KVPolicyCatalog+Wrappers.swift")]

TEMPLATE = """# {title}

{abstract}

## Overview

{sources}
{overview}
## Parameters

{parameters}

## When to use

{when}
"""


def render(article):
    def block(key):
        lines = article[key]
        if not lines or not any(line.strip() for line in lines):
            raise SystemExit(f"{article['file']}: '{key}' is empty")
        return "\n".join(lines)
    overview = "\n".join(article["overview"])
    return TEMPLATE.format(title=article["title"], abstract=block("abstract"), sources=block("sources"),
                           overview=("\n" + overview + "\n") if overview.strip() else "",
                           parameters=block("parameters"), when=block("when"))


def main():
    check = "--check" in sys.argv[1:]
    articles = json.load(open(DATA, encoding="utf-8"))["articles"]
    problems = []
    catalog = "".join(open(p, encoding="utf-8").read() for p in CATALOG)
    names = {n for n in re.findall(r'\b(?:Entry|WrapperEntry)\(name: "([^"]+)"', catalog) if "\\(" not in n}
    covered = {n for a in articles for n in a["policies"]}
    for n in sorted(names - covered):
        problems.append(f"catalog policy {n} has no article (add it to {os.path.relpath(DATA, ROOT)})")
    landing = open(os.path.join(DOCC, "KVCompress.md"), encoding="utf-8").read()
    for a in articles:
        if not re.search(r"arXiv|kvpress|github|No paper|TACL|ICLR|NeurIPS|EMNLP", " ".join(a["sources"])):
            problems.append(f"{a['file']}: the Overview must open with the paper or the reference implementation")
        if f"<doc:{a['file'][:-3]}>" not in landing:
            problems.append(f"{a['file']}: not linked from KVCompress.md")
        path = os.path.join(DOCC, a["file"])
        text = render(a)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            if check:
                problems.append(f"{a['file']}: differs from its rendering (run python3 Scripts/policy_articles.py)")
            else:
                open(path, "w", encoding="utf-8").write(text)
                print(f"wrote {os.path.relpath(path, ROOT)}")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(articles)} policy articles, {len(names)} catalog names covered")


if __name__ == "__main__":
    main()
