"""Who is asking, from real user agents: people's browsers get a device (desktop, mobile,
tablet) and ads; crawlers, AI agents, HTTP libraries, headless browsers and x402 clients are
agents (offered the paid path, never a billable ad)."""

from __future__ import annotations

import pytest
from crawlerdetect import CrawlerDetect

from api.ads.traffic import EXTRA_AGENTS, device_of, is_agent
from api.tracking.ivt import is_bot

PEOPLE = {
    "desktop Chrome": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        "desktop",
    ),
    "Mac Safari": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/18.1 Safari/605.1.15",
        "desktop",
    ),
    "Linux Firefox": (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "desktop",
    ),
    "iPhone Safari": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    "iPhone Chrome": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    "iPad Safari": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/17.5 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    "Android phone Chrome": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    "Android phone, reduced UA": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    "Android phone Samsung Internet": (
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    "Android phone Firefox": (
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        "mobile",
    ),
    "Android tablet Chrome (Galaxy Tab)": (
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        "tablet",
    ),
    "Android tablet, reduced UA": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        "tablet",
    ),
    "Pixel Tablet": (
        "Mozilla/5.0 (Linux; Android 14; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
        "tablet",
    ),
    "Nexus 7": (
        "Mozilla/5.0 (Linux; Android 4.4.2; Nexus 7 Build/KOT49H) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/34.0.1847.114 Safari/537.36",
        "tablet",
    ),
    "Android tablet Firefox": (
        "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0",
        "tablet",
    ),
    "Kindle Fire Silk": (
        "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Silk/126.3.1 like Chrome/126.0.6478.186 Safari/537.36",
        "tablet",
    ),
}

AGENTS = {
    "Googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "GPTBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2;"
    " +https://openai.com/gptbot)",
    "ChatGPT-User": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible;"
    " ChatGPT-User/1.0; +https://openai.com/bot",
    "ClaudeBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0;"
    " +claudebot@anthropic.com)",
    "Claude-User": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible;"
    " Claude-User/1.0; +Claude-User@anthropic.com)",
    "PerplexityBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible;"
    " PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
    "curl": "curl/8.5.0",
    "Wget": "Wget/1.21.4",
    "python-requests": "python-requests/2.32.3",
    "x402 Python client (httpx)": "python-httpx/0.28.1",
    "aiohttp": "Python/3.11 aiohttp/3.10.5",
    "Go": "Go-http-client/2.0",
    "axios": "axios/1.7.9",
    "x402 fetch wrapper": "x402-fetch/0.6.0",
    "HeadlessChrome": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " HeadlessChrome/131.0.0.0 Safari/537.36",
    "no user agent": "",
    # agents our hand-written pattern let through as people
    "Meta's AI crawler": "meta-externalagent/1.1"
    " (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "GoogleOther": "Mozilla/5.0 (compatible; GoogleOther)",
    "WhatsApp link preview": "WhatsApp/2.23.20.0",
    "HTTPie": "HTTPie/3.2.4",
    "Postman": "PostmanRuntime/7.42.0",
    "Dart": "Dart/3.5 (dart:io)",
}

# what crawlerdetect 0.4.2 misses, and so `EXTRA_AGENTS` adds
MISSED_BY_THE_LIBRARY = {
    "Node fetch (x402's JS clients)": "node",
    "Deno fetch": "Deno/1.46.3",
    "Bun fetch": "Bun/1.1.34",
    "JDK HttpClient": "Java-http-client/17.0.2",
    "an x402 client naming itself": "x402-python/2.25.0",
    "Perplexity-User": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible;"
    " Perplexity-User/1.0; +https://perplexity.ai/perplexity-user)",
    "anthropic-ai": "anthropic-ai",
    "cohere-ai": "cohere-ai",
}


@pytest.mark.parametrize(("user_agent", "device"), PEOPLE.values(), ids=PEOPLE.keys())
def test_a_persons_browser_is_no_agent_and_has_its_device(user_agent, device):
    assert (is_agent(user_agent), device_of(user_agent)) == (False, device)
    assert not is_bot(user_agent)  # the tracking intake agrees


@pytest.mark.parametrize("user_agent", AGENTS.values(), ids=AGENTS.keys())
def test_crawlers_ai_agents_http_libraries_and_headless_browsers_are_agents(user_agent):
    assert is_agent(user_agent)
    assert is_bot(user_agent)


@pytest.mark.parametrize("user_agent", MISSED_BY_THE_LIBRARY.values(), ids=MISSED_BY_THE_LIBRARY)
def test_the_extra_list_holds_only_what_the_library_misses(user_agent):
    assert not CrawlerDetect().isCrawler(user_agent)  # else the entry is dead weight: drop it
    assert EXTRA_AGENTS.search(user_agent)
    assert is_agent(user_agent) and is_bot(user_agent)


def test_the_extra_list_does_not_catch_browsers():
    assert not any(EXTRA_AGENTS.search(user_agent) for user_agent, _ in PEOPLE.values())
