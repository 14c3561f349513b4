"""Which path a (possibly rewritten) reply code takes: Delivery, TransientFailure or Bounce.

The rule table of SPEC 2.3 step 4, checked top to bottom:

| codes                 | disposition       | why                                             |
|-----------------------|-------------------|-------------------------------------------------|
| 200-299               | Delivery          | accepted (a rewrite to 2xx counts as delivered)  |
| 503                   | TransientFailure  | bad sequence: a client-side state problem, retry |
| 300-499               | TransientFailure  | 3xx is not a final answer; 4xx is temporary      |
| everything else       | Bounce            | 5xx, and nonsense codes below 200 or from 600    |
"""

from __future__ import annotations

from kumoclient.records import Disposition

_RULES: tuple[tuple[range, Disposition], ...] = (
    (range(200, 300), Disposition.DELIVERY),
    (range(503, 504), Disposition.TRANSIENT_FAILURE),
    (range(300, 500), Disposition.TRANSIENT_FAILURE),
)


def classify(code: int) -> Disposition:
    """The disposition for an SMTP reply code."""
    for codes, disposition in _RULES:
        if code in codes:
            return disposition
    return Disposition.BOUNCE
