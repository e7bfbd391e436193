"""Language identification of tweets with the bundled fastText model."""

from __future__ import annotations

import pytest

from shared.classifier.langid import UNKNOWN, clean_for_langid, detect_languages, normalize_lang

SENTENCES = {
    "es": "El gobierno quiere cerrar la frontera, pero muchas familias llegan cada día buscando trabajo.",
    "de": "Die Regierung will die Grenzen schließen, aber jeden Tag kommen viele Familien und suchen Arbeit.",
    "fr": "Le gouvernement veut fermer la frontière, mais chaque jour beaucoup de familles arrivent pour travailler.",
    "en": "The government wants to close the border, but many families arrive every day looking for work.",
    "ar": "تريد الحكومة إغلاق الحدود، لكن عائلات كثيرة تصل كل يوم بحثا عن عمل.",
    "id": "Pemerintah ingin menutup perbatasan, tetapi banyak keluarga datang setiap hari untuk mencari pekerjaan.",
}


def test_clean_removes_urls_mentions_and_hash_signs():
    text = "RT @user_1: Look https://t.co/AbC123 and www.example.com/x #Refugees welcome @other!"
    assert clean_for_langid(text) == ": Look and Refugees welcome !"


def test_clean_keeps_plain_text_and_collapses_spaces():
    assert clean_for_langid("  hello \n\t world  ") == "hello world"
    assert clean_for_langid("No RTs, thanks: RTE is fine") == "No RTs, thanks: RTE is fine"


def test_detects_each_language():
    detected = detect_languages(list(SENTENCES.values()))
    assert [d.code for d in detected] == list(SENTENCES)
    assert all(0 < d.confidence <= 1 for d in detected)


def test_tweet_noise_does_not_change_the_language():
    noisy = f"@someone {SENTENCES['de']} https://example.org/a?b=c #Grenzen"
    (detected,) = detect_languages([noisy])
    assert detected.code == "de"


@pytest.mark.parametrize("text", ["", "   ", "12345 !!! 😀", "https://t.co/xyz @user #", "RT @a: 2024"])
def test_text_without_letters_is_undetermined(text):
    (detected,) = detect_languages([text])
    assert (detected.code, detected.confidence) == (UNKNOWN, 0.0)


def test_empty_batch():
    assert detect_languages([]) == []


@pytest.mark.parametrize(
    ("tag", "code"),
    [("in", "id"), ("iw", "he"), ("ji", "yi"), ("en-GB", "en"), ("pt_BR", "pt"), (" FR ", "fr"), ("es", "es"),
     (None, None), ("", None)],
)
def test_normalize_lang(tag, code):
    assert normalize_lang(tag) == code
