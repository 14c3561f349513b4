"""The live message table: every message queued in memory, where it waits, and the operations
queue administration needs.

A message is in the table from the moment it is queued (reception, start-up scan) until its
final disposition, once (an id is never queued twice). Where it waits is its `Stage`:
SCHEDULED in the due-time heap, ROUTING behind its routing domain's MX lookup, READY in its
site's ready queue, HELD by a suspension, IN_FLIGHT with a dispatcher. The table also keeps
the contents read at reception or start-up, within CONTENT_BUDGET bytes, so a message's first
attempt needs no read from disk. Other rooms change where a message waits only through the
methods here; nothing outside reaches into these containers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kumoclient.engine.queues import Item, Scheduler, Site, Stage
from kumoclient.records import QueueName, SpooledMessage

# contents kept in memory between reception (or start-up) and the first attempt, so that a
# message is not read back from disk; beyond this many bytes they are read when delivered
CONTENT_BUDGET = 64 * 1024 * 1024

Select = Callable[[Item], bool]


class MessageTable:
    """The messages in memory, by id, and the places they wait."""

    def __init__(
        self, on_due: Callable[[Item], None], *, content_budget: int = CONTENT_BUDGET
    ) -> None:
        self.scheduler = Scheduler(on_due)
        self._items: dict[str, Item] = {}
        self._sites: dict[str, Site] = {}
        self._routing: dict[str, list[Item]] = {}  # routing domain -> items awaiting its MX
        self._held: dict[str, list[Item]] = {}  # suspension id -> the items it holds
        self._cached = 0  # bytes of content held by items
        self._budget = content_budget

    # --- items --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._items

    def get(self, message_id: str) -> Item | None:
        """The live item of a message, if it is queued."""
        return self._items.get(message_id)

    def items(self) -> Iterator[Item]:
        """Every live item (read only: change stages through the methods)."""
        return iter(list(self._items.values()))

    def add(
        self, message: SpooledMessage, queue: str, name: QueueName, content: bytes | None
    ) -> Item | None:
        """Queue a durable message (with its content when known); None when it is live
        already (an incoming/ file picked up again after a crash)."""
        if message.id in self._items:
            return None
        item = Item(message, queue, name)
        self._items[message.id] = item
        if content is not None and self._cached + len(content) <= self._budget:
            item.content = content
            self._cached += len(content)
        return item

    def is_live(self, item: Item) -> bool:
        """True while `item` is its message's live item (not bounced or finished meanwhile)."""
        return self._items.get(item.message.id) is item

    def forget(self, item: Item) -> None:
        """The message reached its final disposition: out of the table."""
        self.drop_content(item)
        if self._items.get(item.message.id) is item:
            del self._items[item.message.id]

    def take_content(self, item: Item) -> bytes | None:
        """The content kept for an item, handed over once (a retry reads it again)."""
        content = item.content
        self.drop_content(item)
        return content

    def drop_content(self, item: Item) -> None:
        """Stop keeping an item's content."""
        if item.content is not None:
            self._cached -= len(item.content)
            item.content = None

    # --- scheduling and sites ---------------------------------------------------------

    def schedule(self, item: Item, message: SpooledMessage | None = None) -> None:
        """Wait for the message's due time (`message`: its new state after an attempt)."""
        if message is not None:
            item.message = message
        self.scheduler.add(item)

    def site(self, name: str) -> Site | None:
        """A site's ready queue, if one was made."""
        return self._sites.get(name)

    def add_site(self, site: Site) -> Site:
        """Keep a new site's ready queue."""
        self._sites[site.name] = site
        return site

    def sites(self) -> list[Site]:
        """Every site's ready queue."""
        return list(self._sites.values())

    def await_route(self, domain: str, item: Item) -> bool:
        """Park an item behind its routing domain's MX lookup; True for the first one (the
        caller starts the lookup)."""
        item.stage = Stage.ROUTING
        waiting = self._routing.get(domain)
        if waiting is not None:
            waiting.append(item)
            return False
        self._routing[domain] = [item]
        return True

    def routed(self, domain: str) -> list[Item]:
        """The items that waited for a domain's MX lookup, which has ended."""
        return self._routing.pop(domain, [])

    # --- holds --------------------------------------------------------------------------

    def hold(self, key: str, item: Item) -> None:
        """Hold an item for suspension `key`."""
        item.stage = Stage.HELD
        self._held.setdefault(key, []).append(item)

    def held(self, key: str) -> int:
        """How many items suspension `key` holds."""
        return len(self._held.get(key, ()))

    def release(self, key: str) -> list[Item]:
        """The items suspension `key` held that are still live (it is lifted)."""
        return [item for item in self._held.pop(key, []) if self.is_live(item)]

    # --- administration ---------------------------------------------------------------

    def take_waiting(self, select: Select) -> list[Item]:
        """Take every selected item out of wherever it waits (scheduled, routing, ready,
        held); in-flight items stay with their dispatchers."""
        taken = self.take_scheduled(select)
        taken.extend(self.take_ready(select))
        for domain, waiting in list(self._routing.items()):
            taken.extend(item for item in waiting if select(item))
            self._routing[domain] = [item for item in waiting if not select(item)]
        for key, held in self._held.items():
            taken.extend(item for item in held if select(item))
            self._held[key] = [item for item in held if not select(item)]
        return [item for item in taken if self.is_live(item)]

    def take_scheduled(self, select: Select) -> list[Item]:
        """Take the selected items out of the due-time heap, in due order."""
        return self.scheduler.remove(select)

    def take_ready(self, select: Select) -> list[Item]:
        """Take the selected items out of every site's ready queue."""
        taken: list[Item] = []
        for site in self._sites.values():
            taken.extend(site.remove(select))
        return taken

    def in_flight(self, select: Select) -> list[Item]:
        """The selected items that dispatchers have taken."""
        return [i for i in self._items.values() if i.stage is Stage.IN_FLIGHT and select(i)]

    def stop(self) -> None:
        """Stop releasing due items and wake idle dispatchers (at engine stop); everything
        stays spooled."""
        self.scheduler.stop()
        for site in self._sites.values():
            site.release_waiters()
