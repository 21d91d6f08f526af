"""One engine process of the two-process race test (tests/test_agent_state.py); no tests here.

``python -m tests.state_race_worker STATE_URL HOME CONVERSATION PREFIX COUNT DELAY_S``: builds a real
:class:`ConversationEngine` whose store comes from ``CHATIR_STATE_URL`` (as a bot replica's does), prints
``ready``, waits for ``go`` on stdin, then sends COUNT answers to one conversation, each sent again after a
:class:`ConcurrentUpdateError` (what the user is told to do). The searcher sleeps DELAY_S per search to
widen the window in which the other process writes. Prints one JSON line: the answers recorded, the
conflicts met.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from agent import ConcurrentUpdateError, ConversationEngine
from agent.questioners.baselines import NoQuestioner
from chatir.settings import Settings
from tests.test_agent_support import toy_searcher


class SlowSearcher:
    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def search(self, dialog, *, k, scope, with_vectors=False):
        time.sleep(self.delay_s)
        return self.inner.search(dialog, k=k, scope=scope, with_vectors=with_vectors)


def main(url: str, home: str, conversation_id: str, prefix: str, count: int, delay_s: float) -> None:
    settings = Settings(home=Path(home), state_url=url, max_rounds=50)
    engine = ConversationEngine(SlowSearcher(toy_searcher(), delay_s), NoQuestioner(), settings=settings)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    recorded, conflicts = [], 0
    for i in range(count):
        text = f"the sky was {prefix}-{i}"
        while True:
            try:
                engine.handle(conversation_id, text)
            except ConcurrentUpdateError:
                conflicts += 1
                continue
            recorded.append(text)
            break
    engine.close()
    print(json.dumps({"recorded": recorded, "conflicts": conflicts}), flush=True)


if __name__ == "__main__":
    url, home, conversation, prefix, count, delay = sys.argv[1:7]
    main(url, home, conversation, prefix, int(count), float(delay))
