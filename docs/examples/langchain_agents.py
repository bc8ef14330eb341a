"""Two LangChain agents (``langchain-openai``'s ``ChatOpenAI``) through a labelgate proxy.

The same flow as openai_agents.py: a researcher summarises an untrusted web page it fetched,
a writer drafts a note from the summary. Only ``base_url`` and one header per agent change;
``include_response_headers`` lets LangChain hand back labelgate's label and decisions.

    pip install langchain-openai
    labelgate serve &
    python docs/examples/langchain_agents.py --base-url http://127.0.0.1:4000/v1
"""

from __future__ import annotations

import argparse
import json

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

PAGE = (
    "Acme's Q3 roadmap: faster search, a new billing page and dark mode ship this quarter; "
    "the team thanks the testers of the beta."
)


def agent(base_url: str, name: str, model: str, api_key: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=base_url,
        api_key=api_key,
        model=model,
        temperature=0,
        max_tokens=64,
        max_retries=0,
        # Without API keys configured, the proxy takes the agent's name from this header.
        default_headers={"X-Labelgate-Agent": name},
        include_response_headers=True,
    )


def ask(llm: ChatOpenAI, messages: list[BaseMessage]) -> str:
    reply = llm.invoke(messages)
    headers = {k.lower(): v for k, v in reply.response_metadata.get("headers", {}).items()}
    label = json.loads(headers.get("x-labelgate-label") or "{}")
    actions = [d["action"] for d in json.loads(headers.get("x-labelgate-decisions") or "[]")]
    text = str(reply.content)
    print(f"  answer:    {text.strip()[:200]}")
    print(f"  label:     {label.get('confidentiality')} / {label.get('integrity')}")
    print(f"  sources:   {', '.join(label.get('sources') or [])}")
    print(f"  decisions: {', '.join(actions) or 'none'}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:4000/v1")
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--api-key", default="unused-without-keys")
    args = parser.parse_args()

    print("researcher:")
    fetch = {"id": "call_1", "name": "fetch_url", "args": {"url": "https://blog.example.net/q3"}}
    summary = ask(
        agent(args.base_url, "researcher", args.model, args.api_key),
        [
            HumanMessage("Summarise https://blog.example.net/q3 in one sentence."),
            AIMessage(content="", tool_calls=[fetch]),
            ToolMessage(PAGE, tool_call_id="call_1"),
        ],
    )
    print("writer:")
    ask(
        agent(args.base_url, "writer", args.model, args.api_key),
        [HumanMessage(f"Draft a two-line team note from this summary:\n{summary}")],
    )


if __name__ == "__main__":
    main()
