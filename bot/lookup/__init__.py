"""Customer lookups and matching against MoonClerk, the review queue, and the queries behind `/finance`
and the Home tab.

- `matching`: pure scoring (the thresholds and weights are documented there);
- `customers`: MoonClerk reads with paging, a short TTL cache and single-flight loads; lookup terms;
- `review`: `match_case` (the background job), the review pick, `MatchWorker`;
- `queries`: read-only case/queue/Home queries and the `/finance` grammar.
"""
