"""Two agents with the official ``openai`` SDK, through a labelgate proxy.

A researcher reads an (untrusted) web page and summarises it; a writer drafts a note from the
researcher's summary. Only ``base_url`` and one header per agent change: labelgate labels the
page, recognises the summary when the writer quotes it, and says so in response headers.

    labelgate serve &                      # http://127.0.0.1:4000/v1 on the local model
    python docs/examples/openai_agents.py --base-url http://127.0.0.1:4000/v1
"""

from __future__ import annotations

import argparse
import json

import openai

PAGE = (
    "Acme's Q3 roadmap: faster search, a new billing page and dark mode ship this quarter; "
    "the team thanks the testers of the beta."
)


def agent(base_url: str, name: str, api_key: str) -> openai.OpenAI:
    # Without API keys configured, the proxy takes the agent's name from this header.
    return openai.OpenAI(
        base_url=base_url, api_key=api_key, default_headers={"X-Labelgate-Agent": name}
    )


def ask(client: openai.OpenAI, model: str, messages: list[dict]) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=64, temperature=0
    )
    text = raw.parse().choices[0].message.content or ""
    label = json.loads(raw.headers.get("x-labelgate-label") or "{}")
    actions = [d["action"] for d in json.loads(raw.headers.get("x-labelgate-decisions") or "[]")]
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
    fetch = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "fetch_url", "arguments": '{"url": "https://blog.example.net/q3"}'},
    }
    summary = ask(
        agent(args.base_url, "researcher", args.api_key),
        args.model,
        [
            {"role": "user", "content": "Summarise https://blog.example.net/q3 in one sentence."},
            {"role": "assistant", "content": "", "tool_calls": [fetch]},
            {"role": "tool", "tool_call_id": "call_1", "content": PAGE},
        ],
    )
    print("writer:")
    ask(
        agent(args.base_url, "writer", args.api_key),
        args.model,
        [{"role": "user", "content": f"Draft a two-line team note from this summary:\n{summary}"}],
    )


if __name__ == "__main__":
    main()
