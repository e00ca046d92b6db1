"""Realistic issue snapshots for tests: stories of the length a newsroom really writes.

`sample_content(n)` returns the frozen-issue dict that digest.render.render_issue takes,
with picks shaped like digest.picks.pick_to_dict output. Titles run to ~80 characters and
summaries to ~300, as on the model newsroom's pages, so size checks mean something.
"""

from __future__ import annotations

from typing import Any

SECTIONS = ["News", "Features", "Analysis", "Opinion"]  # the default DIGEST_SECTIONS

_STORIES: list[tuple[str, str, str]] = [
    (
        "North Korean Foreign Minister Arrives in Moscow for Strategic Talks With Lavrov",
        (
            "North Korea's Foreign Minister Choe Son Hui arrived in Moscow on Wednesday to hold "
            '"strategic" talks with her Russian counterpart Sergei Lavrov, amid Western warnings '
            "that thousands of North Korean troops are training in Russia and could soon be "
            "deployed to fight Ukraine."
        ),
        "AFP",
    ),
    (
        "Russia Charges Woman With Treason for Buying Pro-Ukraine Stamps, Rights Group Says",
        (
            "Lyudmila Kolesnikova was arrested earlier this year after traveling from Ireland to "
            "annexed Crimea to attend her mother's funeral. Investigators say a set of postage "
            "stamps she bought online amounted to financing a hostile state, a charge that "
            "carries a life sentence."
        ),
        "The Moscow Times",
    ),
    (
        "Central Bank Raises Key Rate to Record High as Inflation Refuses to Slow Down",
        (
            "The Bank of Russia lifted its benchmark rate by two percentage points, its sharpest "
            "move in a year, saying wartime spending and a tight labor market keep prices "
            "rising faster than forecast. Economists expect borrowing costs to stay high well "
            "into next year as the budget deficit widens."
        ),
        "Reuters",
    ),
    (
        "In Siberia's Oldest Village, the Last Teacher Keeps the School Open for Six Pupils",
        (
            "Every morning Valentina Petrova walks two kilometers through the snow to unlock a "
            "wooden schoolhouse built in 1911. The regional government wants to close it; the "
            "village says that without the school there will be no reason for young families "
            "to stay, and the village will disappear."
        ),
        "Yulia Ivanova",
    ),
    (
        "Why the Kremlin Is Quietly Rewriting Its Rules for Wartime Media Coverage Again",
        (
            "A new set of guidelines sent to state television editors narrows what can be said "
            "about casualties and mobilization. Media analysts say the changes reflect unease "
            "about public fatigue with the war rather than any shift in policy, and predict "
            "more pressure on the remaining independent outlets."
        ),
        "Pjotr Sauer",
    ),
    (
        "Moscow's Metro Turns 90: A Visual History of the World's Most Ornate Subway",
        (
            "From the marble halls of Komsomolskaya to the brutalist stations of the 1970s, the "
            "Moscow metro has always been a statement of power as much as a means of transport. "
            "We look back at nine decades of chandeliers, mosaics and record-breaking "
            "construction, and at what comes next."
        ),
        "Anna Savchenko",
    ),
    (
        "Sanctions Have Not Stopped Western Goods Reaching Russian Shelves. Here Is How",
        (
            "Parallel imports through Central Asia and the Caucasus keep phones, cars and "
            "spare parts flowing into Russia, at a markup. Customs data reviewed by our "
            "reporters show trade through Kyrgyzstan and Armenia has tripled since 2021, "
            "while official Western exports fell sharply."
        ),
        "Bloomberg",
    ),
    (
        "Opinion: The Regions Are Paying for the War, and They Are Starting to Notice",
        (
            "Regional budgets are being squeezed as Moscow redirects revenue to defense. "
            "Governors have cut school repairs, public transport subsidies and healthcare to "
            "balance their books, and local discontent is growing, even if it rarely makes "
            "the evening news on federal television channels."
        ),
        "Nikolai Petrov",
    ),
    (
        "Kazakhstan Votes to Build Its First Nuclear Power Plant, With Rosatom in the Lead",
        (
            "Voters backed the plan in a referendum that the opposition called a formality. "
            "Russia's state nuclear company is the front-runner to build the plant on the shore "
            "of Lake Balkhash, a deal that would tie Astana's energy future to Moscow for "
            "decades, even as it courts Chinese and Western investors."
        ),
        "Eurasianet",
    ),
    (
        "The Forgotten Soviet Architect Whose Apartment Blocks Still House Millions",
        (
            "Vitaly Lagutenko designed the prefabricated five-storey blocks that ended the "
            "postwar housing crisis, and that Moscow has spent the last decade tearing down. "
            "A new exhibition asks whether the khrushchyovka deserves a second look before the "
            "last of them disappear from the capital's skyline."
        ),
        "Jake Cordell",
    ),
    (
        "Gas Transit Through Ukraine Ends, Leaving Moldova's Breakaway Region in the Cold",
        (
            "With the transit contract expired, Transnistria has switched off heating and hot "
            "water for most homes and closed its largest factories. Chisinau has offered help, "
            "but the separatist authorities, who depend on free Russian gas, say they will wait "
            "for Moscow to find another route."
        ),
        "AFP",
    ),
    (
        "Russia's Wheat Exports Hit Record as Farmers Complain of Losses at Home",
        (
            "Grain traders shipped more Russian wheat than ever this season, helped by a weak "
            "ruble and new buyers in Africa and the Middle East. Farmers, squeezed by export "
            "quotas and duties, say the profits end up with a handful of state-linked traders "
            "while their own margins keep shrinking."
        ),
        "Reuters",
    ),
    (
        "A Ballet Star, a Canceled Premiere and the New Rules of Russian Culture",
        (
            "The Bolshoi dropped a celebrated production days before its premiere after its "
            "director spoke out against the war. The company's dancers describe a season of "
            "self-censorship, empty foreign tours and a repertoire chosen to avoid attention "
            "from officials and patriotic activists."
        ),
        "Leyla Latypova",
    ),
    (
        "What the New Budget Tells Us About Russia's Plans for the Next Three Years",
        (
            "Defense and security will take almost 40 percent of federal spending next year, "
            "the highest share since Soviet times. The figures suggest the Kremlin is preparing "
            "for a long war while betting that oil revenue and higher taxes can keep the "
            "deficit under control."
        ),
        "Alexandra Prokopenko",
    ),
    (
        "Opinion: Russia's Demographic Crisis Cannot Be Solved by Banning Ideas",
        (
            "Laws against 'child-free propaganda' will not persuade anyone to have children. "
            "Housing, childcare and confidence in the future would, and those are exactly what "
            "the war has made scarce. The birth rate is now the lowest in a quarter of a "
            "century, and emigration is making it worse."
        ),
        "Ilya Klishin",
    ),
    (
        "Courts Jail Teenagers Over Railway Sabotage Recruited Through Telegram Chats",
        (
            "Dozens of teenagers have been sentenced to long prison terms for setting fire to "
            "relay boxes along railway lines, often for a few thousand rubles promised by "
            "anonymous handlers. Lawyers say many of the defendants did not understand they "
            "were being charged with terrorism."
        ),
        "Mediazona",
    ),
    (
        "Lake Baikal's Seals Are Dying in Unusual Numbers. Scientists Do Not Know Why",
        (
            "Hundreds of dead nerpa, the world's only freshwater seal, have washed up on the "
            "shores of Lake Baikal this autumn. Researchers suspect a virus or a collapse of the "
            "fish the seals feed on, but say funding cuts and travel bans make it hard to carry "
            "out the tests that would tell."
        ),
        "Siberian Times",
    ),
    (
        "Inside the Scheme That Moves Chinese Car Parts Into Russia's Arms Factories",
        (
            "Invoices obtained by our reporters show dual-use components routed through "
            "trading companies in Hong Kong and Kyrgyzstan, relabeled as spare parts for "
            "passenger cars. The suppliers change every few months, staying one step ahead "
            "of Western sanctions lists and export controls."
        ),
        "The Insider",
    ),
    (
        "Opinion: Europe Should Stop Pretending That Russian Gas Is Gone for Good",
        (
            "Liquefied natural gas from Russia's Arctic still arrives in European ports, and "
            "imports rose this year. If the European Union wants to cut the Kremlin's "
            "revenues, it must decide whether it is willing to pay more for energy, and say "
            "so openly to its voters."
        ),
        "Sergei Vakulenko",
    ),
    (
        "Moscow Courts Reject Appeal of Jailed Journalist Accused of Spying",
        (
            "A Moscow court upheld the 16-year sentence of a journalist convicted of espionage "
            "in a closed trial. Her lawyers say the case rests on an article about military "
            "procurement built entirely from public sources, and plan to take it to the "
            "Supreme Court and the United Nations."
        ),
        "AP",
    ),
]

_SECTION_OF = [
    "News", "News", "News", "Features", "Analysis", "Features", "Analysis", "Opinion",
    "News", "Features", "News", "News", "Features", "Analysis", "Opinion", "News",
    "Features", "Analysis", "Opinion", "News",
]  # fmt: skip

#: Pictures (with alt text and credit) for every third story, as on the newsroom's pages.
_PICTURES = {
    0: ("Choe Son Hui and Sergei Lavrov shake hands in Moscow", "Alexander Shcherbak / TASS"),
    3: ("A wooden schoolhouse in a snow-covered Siberian village", "Yulia Ivanova"),
    6: ("Shoppers in a Moscow electronics store", "Sergei Kiselev / Moskva News Agency"),
    9: ("Rows of five-storey prefabricated apartment blocks", "Wikimedia Commons"),
    12: ("Dancers on the stage of the Bolshoi Theatre", "Damir Yusupov / Bolshoi Theatre"),
    15: ("A freight train passing a railway relay box", "Kirill Zykov / Moskva News Agency"),
    18: ("An LNG tanker moored at an Arctic terminal", "Novatek"),
}

_TAGS = [
    ["North Korea", "Lavrov"], ["Treason", "Crimea"], ["Economy", "Central Bank"], ["Siberia"],
    ["Media"], ["Moscow", "History"], ["Sanctions"], ["Regions"], ["Kazakhstan", "Nuclear"],
    ["Architecture"], ["Moldova", "Gas"], ["Agriculture"], ["Culture"], ["Budget"],
    ["Demographics"], ["Courts"], ["Environment"], ["Sanctions", "China"], ["Energy"], ["Press"],
]  # fmt: skip


def sample_pick(i: int, *, section: str | None = None, featured: bool = False) -> dict[str, Any]:
    """One pick in snapshot form; `i` picks the story (cycled) and makes the URL unique."""
    story = i % len(_STORIES)
    title, summary, byline = _STORIES[story]
    alt, credit = _PICTURES.get(story, ("", ""))
    return {
        "id": i + 1,
        "url": f"https://www.themoscowtimes.com/2026/11/{20 + i % 8}/story-{i + 1}-a{i * 7919}",
        "title": title,
        "summary": summary,
        "section": section or _SECTION_OF[story],
        "image_url": f"https://static.themoscowtimes.com/image/article_1360/{i + 1}.jpg"
        if alt
        else None,
        "image_alt": alt,
        "image_credit": credit,
        "byline": byline,
        "read_minutes": 1 + i % 7,
        "tags": list(_TAGS[story]),
        "featured": featured,
        "position": i + 1,
    }


def sample_content(n_picks: int = 20, *, featured_index: int | None = 0) -> dict[str, Any]:
    """A frozen issue with `n_picks` stories; `featured_index=None` marks none as featured."""
    picks = [sample_pick(i, featured=(i == featured_index)) for i in range(n_picks)]
    return {
        "key": "2026-W48",
        "subject": "The Weekly Digest: Lavrov's guests, a record rate and Siberia's last school",
        "preheader": "North Korea's foreign minister in Moscow, and the week's best long reads.",
        "intro": (
            "This week North Korea's foreign minister came to Moscow, the central bank "
            "surprised nobody by raising rates again, and our reporters spent a week in "
            "Siberia's oldest village.\n\n"
            "As always, these are the stories our editors think are worth your time. "
            "Thank you for reading, and for sharing the digest with friends."
        ),
        "date": "2026-11-27",
        "picks": picks,
    }
