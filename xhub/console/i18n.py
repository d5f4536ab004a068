"""German and English for the console. The English text is the key; German is looked up, English is the fallback.

The language is the ``xhub_lang`` cookie (the switch in the header sets it), else the best of the browser's
``Accept-Language``, else German (the console's users are German administrations).
"""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["LANGUAGES", "language", "translator"]

LANGUAGES = ("de", "en")
COOKIE = "xhub_lang"

DE: dict[str, str] = {
    "Operator console": "Betriebskonsole",
    "Log in": "Anmelden",
    "Log out": "Abmelden",
    "User name": "Benutzername",
    "Password": "Passwort",
    "Unknown user or wrong password.": "Unbekannter Benutzer oder falsches Passwort.",
    "Too many failed logins; wait a few minutes.": "Zu viele Fehlversuche; bitte einige Minuten warten.",
    "The form has expired; try again.": "Das Formular ist abgelaufen; bitte erneut versuchen.",
    "Search": "Suche",
    "Messages": "Nachrichten",
    "Dashboard": "Übersicht",
    "Bulk actions": "Sammelaktionen",
    "Audit log": "Protokoll",
    "Rules at hand": "Regeln ausprobieren",
    "Users": "Benutzer",
    "API docs": "API-Dokumentation",
    "Any id: hub id, sender reference, submission or case id, XÖV message UUID":
        "Beliebige Kennung: Hub-ID, Absenderreferenz, Einreichungs- oder Vorgangs-ID, XÖV-Nachrichten-UUID",
    "Status": "Status",
    "Tenant": "Mandant",
    "Channel": "Kanal",
    "Route": "Route",
    "Target": "Ziel",
    "Standard": "Standard",
    "Message type": "Nachrichtentyp",
    "From": "Von",
    "Until": "Bis",
    "any": "alle",
    "Received": "Eingegangen",
    "Sender": "Absender",
    "Sender reference": "Absenderreferenz",
    "No messages match.": "Keine Nachrichten gefunden.",
    "Next page": "Nächste Seite",
    "Message": "Nachricht",
    "Facts": "Eckdaten",
    "Timeline": "Verlauf",
    "Validation report": "Prüfbericht",
    "Route explanation": "Routenentscheidung",
    "Deliveries": "Zustellungen",
    "Answers to the sender": "Antworten an den Absender",
    "Versions": "Versionen",
    "Actions": "Aktionen",
    "Retry now": "Jetzt erneut versuchen",
    "Requeue from stage": "Ab Stufe neu einreihen",
    "Reject": "Zurückweisen",
    "Reason": "Begründung",
    "Edit and resubmit": "Bearbeiten und neu einreichen",
    "Download payload": "Nutzdaten herunterladen",
    "Stage": "Stufe",
    "where it stopped": "wo sie anhielt",
    "validate": "prüfen",
    "route": "routen",
    "deliver": "zustellen",
    "When": "Zeitpunkt",
    "Actor": "Akteur",
    "Kind": "Art",
    "Change": "Änderung",
    "Rule": "Regel",
    "Line": "Zeile",
    "Severity": "Schwere",
    "No findings.": "Keine Befunde.",
    "Not validated yet.": "Noch nicht geprüft.",
    "Chosen route": "Gewählte Route",
    "Not routed yet.": "Noch nicht geroutet.",
    "did not match": "passte nicht",
    "Attempt": "Versuch",
    "Outcome": "Ergebnis",
    "Answer": "Antwort",
    "none": "keine",
    "Previous version": "Vorige Version",
    "Newer version": "Neuere Version",
    "Action": "Aktion",
    "Address": "Adresse",
    "Done.": "Erledigt.",
    "Corrected payload": "Korrigierte Nutzdaten",
    "Content type": "Inhaltstyp",
    "Comment": "Kommentar",
    "Resubmit as new version": "Als neue Version einreichen",
    "Preview": "Vorschau",
    "Run": "Ausführen",
    "Requeue": "Neu einreihen",
    "messages would be affected": "Nachrichten wären betroffen",
    "more than the bound": "mehr als die Obergrenze",
    "Bound": "Obergrenze",
    "Result": "Ergebnis",
    "done": "erledigt",
    "skipped": "übersprungen",
    "failed": "fehlgeschlagen",
    "Per tenant": "Je Mandant",
    "Per target": "Je Ziel",
    "Messages per minute": "Nachrichten pro Minute",
    "Error rate": "Fehlerquote",
    "p95 latency": "p95-Laufzeit",
    "Oldest waiting": "Älteste wartende",
    "Dead": "Gestoppt",
    "Circuit": "Schutzschalter",
    "Workers and pollers": "Worker und Abrufer",
    "last hour": "letzte Stunde",
    "last 15 minutes": "letzte 15 Minuten",
    "Check": "Prüfen",
    "Paste a message": "Nachricht einfügen",
    "or upload a file": "oder Datei hochladen",
    "Mapped output": "Abgebildete Ausgabe",
    "No route matches.": "Keine Route passt.",
    "Role": "Rolle",
    "Tenants": "Mandanten",
    "all": "alle",
    "disabled": "gesperrt",
    "active": "aktiv",
    "Not found": "Nicht gefunden",
    "Not allowed": "Nicht erlaubt",
    "Back to the search": "Zurück zur Suche",
    "Language": "Sprache",
    "Skip to content": "Zum Inhalt springen",
    "Refreshes by itself every 10 seconds.": "Aktualisiert sich alle 10 Sekunden selbst.",
    "Login with the town's account": "Mit dem Konto der Kommune anmelden",
    "or": "oder",
    "The identity provider login failed.": "Die Anmeldung über den Identitätsanbieter ist fehlgeschlagen.",
    "logged in as": "angemeldet als",
    # statuses (the machine value stays in data-status)
    "received": "eingegangen",
    "validated": "geprüft",
    "routed": "geroutet",
    "delivered": "zugestellt",
    "acknowledged": "bestätigt",
    "retry_wait": "wartet auf Wiederholung",
    "rejected": "zurückgewiesen",
    "dead": "gestoppt",
    "pending": "offen",
}


def language(request: Request) -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    best, best_q = "de", -1.0
    for item in (request.headers.get("accept-language") or "")[:500].split(","):
        tag, _, params = item.strip().partition(";")
        code = tag.strip().lower()[:2]
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        if code in LANGUAGES and q > best_q:
            best, best_q = code, q
    return best


def translator(lang: str):  # type: ignore[no-untyped-def]
    table = DE if lang == "de" else {}

    def t(text: str) -> str:
        return table.get(text, text)

    return t
