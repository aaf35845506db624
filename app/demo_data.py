"""Demo data: a product with half a year of releases, so a newcomer sees Tidings working.

Loading is idempotent: products, notes and the demo account are matched by
their natural keys and only what is missing is created. The set includes a
draft, a scheduled note and an internal note, so every public view can be
checked for leaks, and half a year of Lumen's support tickets from a Zendesk
connection, with a note held back from a fifth of its users, so Support impact
opens on real figures. Eight weeks of the days the widget saw Lumen's users, the
reactions, note e-mails and subscribers of those weeks and the last hour of widget
traffic, with the Insights roll-up counted from them, do the same for Insights and
Status.
"""

from __future__ import annotations

import io
import math
import random
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from flask import current_app
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Table, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from announcements import (
    accounts,
    agent_sends,
    audit,
    catalogue,
    help,
    holdback,
    images,
    inbox,
    lookup,
    mailing,
    monitoring,
    notices,
    reads,
    rollups,
    services,
    subscriptions,
    support_desks,
    support_impact,
    tickets,
    translations,
    user_state,
    versions,
)
from announcements.models import (
    Acknowledgement,
    AgentSend,
    Category,
    EndUser,
    EndUserDay,
    Frequency,
    HelpRequest,
    HelpShown,
    Note,
    NoteStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    ReadReceipt,
    Role,
    Subscriber,
    SubscriberStatus,
    SupportConnection,
    SupportDesk,
    TeamMember,
    Ticket,
    TrafficMinute,
    outward_clause,
)
from announcements.services import Intent, NoteInput, ProductSettings
from app.database import write_turn
from app.public import media

DEMO_EMAIL = "demo@example.com"
DEMO_HOST_PRODUCT = "lumen"  # the product the demo host page embeds
DEMO_HOST_USER = "demo-user"
DEMO_READERS = 80
# Lumen speaks English (its default) and these: most notes in all three, one French text
# outdated, one note in English only.
LUMEN_LANGUAGES = ("fr", "ar")
READERS_VERSION = "2.10.0"
# What some demo readers said, by note title: so a note's page in the console has
# reactions and comments to show.
DEMO_COMMENTS: dict[str, list[tuple[str, str | None]]] = {
    "Funnels: see where people drop off": [("👍", "Finally! Can I export a funnel as CSV?")],
    "The classic dashboard is gone": [
        ("😕", "Where did my saved layouts from the old dashboard go?")
    ],
    "Dates in exported PDFs": [("👍", None)],
}


@dataclass(frozen=True)
class DemoText:
    """A note's title and body in another of its product's languages."""

    locale: str
    title: str
    body_md: str
    published: bool = True  # else a draft


@dataclass(frozen=True)
class DemoNote:
    version: str
    days_ago: int | None  # None: not published by the demo
    category: Category
    title: str
    body_md: str
    is_important: bool = False
    is_internal: bool = False
    intent: Intent = Intent.PUBLISH
    support_topics: tuple[str, ...] = ()
    holdback_percent: int = 0
    requires_acknowledgement: bool = False
    escalate_after_days: int | None = None
    # Written this long before it went live, and scheduled for then: Status shows the
    # last scheduled note that went live.
    scheduled_ahead: timedelta | None = None
    # The note in the product's other languages, each translated a day after it was
    # written (a day later again for those translated before an edit).
    translations: tuple[DemoText, ...] = ()
    # The body it went out with before an edit two days later, and the languages translated
    # from that body: their translations are outdated since.
    first_body_md: str | None = None
    outdated: tuple[str, ...] = ()


LUMEN_NOTES = [
    DemoNote(
        "2.0.0",
        182,
        Category.ADDED,
        "A new dashboard, rebuilt from the ground up",
        """\
Lumen 2.0 brings a dashboard that loads **three times faster** and works on any screen.

- Drag cards to arrange your own layout
- Pin the reports you open every morning
- Dark mode follows your system setting

![The new dashboard]({img}/dashboard.png)
""",
        is_important=True,
        translations=(
            DemoText(
                "fr",
                "Un nouveau tableau de bord, entièrement repensé",
                """\
Lumen 2.0 apporte un tableau de bord qui se charge **trois fois plus vite** et s'adapte à
tous les écrans.

- Faites glisser les cartes pour composer votre propre disposition
- Épinglez les rapports que vous ouvrez chaque matin
- Le mode sombre suit le réglage de votre système

![Le nouveau tableau de bord]({img}/dashboard.png)
""",
            ),
            DemoText(
                "ar",
                "لوحة معلومات جديدة أُعيد بناؤها من الأساس",
                """\
يقدّم Lumen 2.0 لوحة معلومات تُحمَّل **أسرع بثلاث مرات** وتعمل على أي شاشة.

- اسحب البطاقات لترتيب لوحتك كما تريد
- ثبّت التقارير التي تفتحها كل صباح
- يتبع الوضع الداكن إعدادات نظامك

![لوحة المعلومات الجديدة]({img}/dashboard.png)
""",
            ),
        ),
    ),
    DemoNote(
        "2.0.0",
        182,
        Category.REMOVED,
        "The classic dashboard is gone",
        """\
The classic dashboard from 1.x has been retired. Saved layouts were carried over
automatically; if something looks off, *Reset layout* in the card menu restores the default.
""",
        support_topics=("layout",),
        translations=(
            DemoText(
                "fr",
                "L'ancien tableau de bord disparaît",
                """\
L'ancien tableau de bord de la version `1.x` a été retiré. Vos dispositions enregistrées ont
été reprises automatiquement ; si quelque chose vous semble décalé, *Réinitialiser la
disposition* dans le menu de la carte rétablit la disposition par défaut.
""",
            ),
            DemoText(
                "ar",
                "وداعًا للوحة المعلومات الكلاسيكية",
                """\
أُوقفت لوحة المعلومات الكلاسيكية من الإصدار `1.x`. نُقلت تخطيطاتك المحفوظة تلقائيًا، وإن بدا
لك شيء في غير مكانه فاختر *إعادة ضبط التخطيط* من قائمة البطاقة لاستعادة التخطيط الافتراضي.
""",
            ),
        ),
    ),
    DemoNote(
        "2.1.0",
        168,
        Category.ADDED,
        "Export any chart as PNG or CSV",
        """\
Every chart now has an **Export** button. PNG exports keep your theme; CSV exports include
the raw numbers behind each point.
""",
        support_topics=("export",),
        translations=(
            DemoText(
                "fr",
                "Exportez n'importe quel graphique en PNG ou en CSV",
                """\
Chaque graphique dispose désormais d'un bouton **Exporter** pour les fichiers PNG et CSV.
""",
            ),
            DemoText(
                "ar",
                "صدّر أي مخطط بصيغة PNG أو CSV",
                """\
أصبح لكل مخطط الآن زر **تصدير**. تحتفظ صور PNG المصدَّرة بسمة الألوان التي تستخدمها، وتتضمن
ملفات CSV الأرقام الأولية وراء كل نقطة.
""",
            ),
        ),
        first_body_md="""\
Every chart now has an **Export** button for PNG and CSV files.
""",
        outdated=("fr",),
    ),
    DemoNote(
        "2.1.0",
        168,
        Category.FIXED,
        "Time zones in weekly reports",
        """\
Weekly reports now start on Monday *in your workspace's time zone* instead of UTC.
""",
        translations=(
            DemoText(
                "fr",
                "Fuseaux horaires dans les rapports hebdomadaires",
                """\
Les rapports hebdomadaires commencent désormais le lundi *dans le fuseau horaire de votre
espace de travail*, et non plus en UTC.
""",
            ),
            DemoText(
                "ar",
                "المناطق الزمنية في التقارير الأسبوعية",
                """\
تبدأ التقارير الأسبوعية الآن يوم الاثنين *وفق المنطقة الزمنية لمساحة عملك* بدلًا من التوقيت
العالمي (UTC).
""",
            ),
        ),
    ),
    DemoNote(
        "2.2.0",
        151,
        Category.CHANGED,
        "Faster search across all reports",
        """\
Search now matches report names, descriptions and the names of the metrics inside them.
Results appear as you type.
""",
        translations=(
            DemoText(
                "fr",
                "Une recherche plus rapide dans tous les rapports",
                """\
La recherche porte désormais sur le nom des rapports, leur description et le nom des
indicateurs qu'ils contiennent. Les résultats s'affichent pendant la saisie.
""",
            ),
            DemoText(
                "ar",
                "بحث أسرع في جميع التقارير",
                """\
يبحث Lumen الآن في أسماء التقارير وأوصافها وأسماء المقاييس التي تحتويها، وتظهر النتائج
أثناء الكتابة.
""",
            ),
        ),
    ),
    DemoNote(
        "2.2.0",
        151,
        Category.DEPRECATED,
        "API v1 will be retired in version 3.0",
        """\
The v1 REST API is deprecated and will stop answering in **Lumen 3.0**. Move to v2 — the
requests are the same, with cursors instead of page numbers:

```bash
curl -H "Authorization: Bearer $LUMEN_TOKEN" \\
  "https://api.lumen.example/v2/reports?cursor=…"
```

See the [migration guide](https://docs.lumen.example/api/v2-migration).
""",
        is_important=True,
        support_topics=("api",),
        translations=(
            DemoText(
                "fr",
                "L'API v1 sera retirée dans la version 3.0",
                """\
L'API REST v1 est obsolète et cessera de répondre avec **Lumen 3.0**. Passez à la v2 : les
requêtes sont les mêmes, avec des curseurs à la place des numéros de page :

```bash
curl -H "Authorization: Bearer $LUMEN_TOKEN" \\
  "https://api.lumen.example/v2/reports?cursor=…"
```

Consultez le [guide de migration](https://docs.lumen.example/api/v2-migration).
""",
            ),
            DemoText(
                "ar",
                "إيقاف واجهة API v1 في الإصدار 3.0",
                """\
أصبحت واجهة REST API v1 قديمة وستتوقف عن الاستجابة في **Lumen 3.0**. انتقل إلى v2، فالطلبات
هي نفسها مع مؤشرات (cursors) بدلًا من أرقام الصفحات:

```bash
curl -H "Authorization: Bearer $LUMEN_TOKEN" \\
  "https://api.lumen.example/v2/reports?cursor=…"
```

راجع [دليل الانتقال](https://docs.lumen.example/api/v2-migration).
""",
            ),
        ),
    ),
    DemoNote(
        "2.3.0",
        137,
        Category.ADDED,
        "Alerts when a metric crosses a threshold",
        """\
Set an alert on any metric and Lumen tells you by email or Slack when it crosses the line.

1. Open a chart
2. Choose **Alert me** in the chart menu
3. Pick the threshold and where to be told
""",
        translations=(
            DemoText(
                "fr",
                "Des alertes quand un indicateur franchit un seuil",
                """\
Définissez une alerte sur n'importe quel indicateur : Lumen vous prévient par e-mail ou sur
Slack dès qu'il franchit la limite.

1. Ouvrez un graphique
2. Choisissez **M'alerter** dans le menu du graphique
3. Indiquez le seuil et où être prévenu
""",
            ),
            DemoText(
                "ar",
                "تنبيهات عندما يتجاوز مقياسٌ حدًّا تختاره",
                """\
اضبط تنبيهًا على أي مقياس، وسيُعلمك Lumen عبر البريد الإلكتروني أو Slack حين يتجاوز الحد.

1. افتح مخططًا
2. اختر **نبّهني** من قائمة المخطط
3. حدّد العتبة والمكان الذي تريد أن يصلك التنبيه فيه
""",
            ),
        ),
    ),
    DemoNote(
        "2.4.0",
        121,
        Category.SECURITY,
        "Single sign-on with SAML and OIDC",
        """\
Workspaces on the Business plan can now require single sign-on. Okta, Azure AD and Google
Workspace are supported out of the box; any SAML 2.0 or OpenID Connect provider works.
""",
        translations=(
            DemoText(
                "fr",
                "Authentification unique avec SAML et OIDC",
                """\
Les espaces de travail de l'offre Business peuvent désormais exiger l'authentification
unique. Okta, Azure AD et Google Workspace sont pris en charge d'emblée ; tout fournisseur
SAML 2.0 ou OpenID Connect fonctionne.
""",
            ),
            DemoText(
                "ar",
                "تسجيل الدخول الموحّد عبر SAML وOIDC",
                """\
يمكن لمساحات العمل في خطة Business الآن أن تشترط تسجيل الدخول الموحّد. تعمل Okta وAzure AD
وGoogle Workspace مباشرةً، كما يعمل أي موفّر هوية يدعم SAML 2.0 أو OpenID Connect.
""",
            ),
        ),
    ),
    DemoNote(
        "2.4.0",
        121,
        Category.FIXED,
        "CSV imports with semicolons",
        """\
CSV files that use `;` as the separator (common in Europe) are detected and imported
correctly.
""",
        translations=(
            DemoText(
                "fr",
                "Import de fichiers CSV séparés par des points-virgules",
                """\
Les fichiers CSV qui utilisent `;` comme séparateur (courant en Europe) sont détectés et
importés correctement.
""",
            ),
            DemoText(
                "ar",
                "استيراد ملفات CSV المفصولة بفاصلة منقوطة",
                """\
يتعرّف Lumen الآن على ملفات CSV التي تستخدم `;` فاصلًا (وهو شائع في أوروبا) ويستوردها
بشكل صحيح.
""",
            ),
        ),
    ),
    DemoNote(
        "2.5.0",
        104,
        Category.CHANGED,
        "Clearer permissions for viewers",
        """\
| Role | View reports | Edit reports | Invite people |
|------|:---:|:---:|:---:|
| Viewer | ✓ | | |
| Editor | ✓ | ✓ | |
| Admin | ✓ | ✓ | ✓ |
""",
        translations=(
            DemoText(
                "fr",
                "Des droits plus clairs pour les lecteurs",
                """\
| Rôle | Voir les rapports | Modifier les rapports | Inviter des personnes |
|------|:---:|:---:|:---:|
| Lecteur | ✓ | | |
| Éditeur | ✓ | ✓ | |
| Administrateur | ✓ | ✓ | ✓ |
""",
            ),
            DemoText(
                "ar",
                "صلاحيات أوضح للمشاهدين",
                """\
| الدور | عرض التقارير | تعديل التقارير | دعوة الأشخاص |
|------|:---:|:---:|:---:|
| مشاهد | ✓ | | |
| محرّر | ✓ | ✓ | |
| مسؤول | ✓ | ✓ | ✓ |
""",
            ),
        ),
    ),
    DemoNote(
        "2.6.0",
        88,
        Category.ADDED,
        "Annotations on charts",
        """\
Mark a launch, an outage or a campaign right on the chart. Annotations are shared with your
team and appear on every chart of the same metric.
""",
        translations=(
            DemoText(
                "fr",
                "Des annotations sur les graphiques",
                """\
Signalez un lancement, une panne ou une campagne directement sur le graphique. Les
annotations sont partagées avec votre équipe et apparaissent sur tous les graphiques du même
indicateur.
""",
            ),
            DemoText(
                "ar",
                "ملاحظات توضيحية على المخططات",
                """\
ضع علامة على إطلاق أو انقطاع في الخدمة أو حملة تسويقية مباشرةً على المخطط. يراها فريقك كله،
وتظهر على كل مخطط للمقياس نفسه.
""",
            ),
        ),
    ),
    DemoNote(
        "2.6.0",
        88,
        Category.CHANGED,
        "Billing per seat, and invoices with VAT on every line",
        """\
Plans are now billed per active seat instead of per workspace, so you pay only for the people
who use Lumen. Invoices show VAT on every line and your company's VAT number.
""",
        support_topics=("billing", "invoice"),
        translations=(
            DemoText(
                "fr",
                "Facturation par siège, et la TVA sur chaque ligne des factures",
                """\
Les offres sont désormais facturées par siège actif et non plus par espace de travail : vous
ne payez que pour les personnes qui utilisent Lumen. Les factures indiquent la TVA sur
chaque ligne ainsi que le numéro de TVA de votre entreprise.
""",
            ),
            DemoText(
                "ar",
                "الفوترة حسب المقعد، وضريبة القيمة المضافة في كل سطر من الفاتورة",
                """\
أصبحت الخطط تُحتسب لكل مقعد نشط بدلًا من كل مساحة عمل، فلا تدفع إلا مقابل الأشخاص الذين
يستخدمون Lumen. وتُظهر الفواتير ضريبة القيمة المضافة في كل سطر والرقم الضريبي لشركتك.
""",
            ),
        ),
    ),
    DemoNote(
        "2.7.0",
        70,
        Category.FIXED,
        "Dashboards no longer flicker on refresh",
        """\
Auto-refresh now updates cards in place instead of redrawing the whole page.
""",
        translations=(
            DemoText(
                "fr",
                "Les tableaux de bord ne clignotent plus à l'actualisation",
                """\
L'actualisation automatique met désormais à jour les cartes sur place au lieu de redessiner
toute la page.
""",
            ),
            DemoText(
                "ar",
                "لم تعد لوحات المعلومات تومض عند التحديث",
                """\
يحدّث التحديث التلقائي البطاقات الآن في مكانها بدلًا من إعادة رسم الصفحة بأكملها.
""",
            ),
        ),
    ),
    DemoNote(
        "2.8.0",
        52,
        Category.ADDED,
        "Scheduled reports by email",
        """\
Send any report to your team every day, week or month. Recipients don't need a Lumen account.
""",
        support_topics=("scheduled-reports",),
        translations=(
            DemoText(
                "fr",
                "Des rapports programmés par e-mail",
                """\
Envoyez n'importe quel rapport à votre équipe chaque jour, chaque semaine ou chaque mois.
Les destinataires n'ont pas besoin d'un compte Lumen.
""",
            ),
            DemoText(
                "ar",
                "تقارير مجدولة عبر البريد الإلكتروني",
                """\
أرسل أي تقرير إلى فريقك كل يوم أو كل أسبوع أو كل شهر، دون أن يحتاج المستلمون إلى حساب في Lumen.
""",
            ),
        ),
    ),
    DemoNote(
        "2.9.0",
        36,
        Category.CHANGED,
        "A calmer, more readable chart palette",
        """\
Charts use a new colour palette designed for contrast and for colour-blind readers.
Your custom colours are unchanged.
""",
        translations=(
            DemoText(
                "fr",
                "Une palette de graphiques plus sobre et plus lisible",
                """\
Les graphiques utilisent une nouvelle palette de couleurs, pensée pour le contraste et pour
les personnes daltoniennes. Vos couleurs personnalisées ne changent pas.
""",
            ),
            DemoText(
                "ar",
                "ألوان أهدأ وأوضح للمخططات",
                """\
تستخدم المخططات لوحة ألوان جديدة صُممت لتباين أوضح ولتناسب المصابين بعمى الألوان. أما
ألوانك المخصصة فتبقى كما هي.
""",
            ),
        ),
    ),
    DemoNote(
        "2.9.1",
        29,
        Category.SECURITY,
        "Session cookies now expire after 12 hours",
        """\
For your security, sessions now expire after 12 hours of inactivity. Single sign-on
workspaces can change this in **Settings → Security**.
""",
        support_topics=("login", "session"),
        holdback_percent=20,
        translations=(
            DemoText(
                "fr",
                "Les cookies de session expirent désormais après 12 heures",
                """\
Pour votre sécurité, les sessions expirent désormais après 12 heures d'inactivité. Les
espaces de travail avec authentification unique peuvent modifier ce délai dans
**Paramètres → Sécurité**.
""",
            ),
            DemoText(
                "ar",
                "تنتهي صلاحية ملفات تعريف الارتباط للجلسات الآن بعد 12 ساعة",
                """\
حرصًا على أمانك، تنتهي صلاحية الجلسات الآن بعد 12 ساعة من عدم النشاط. ويمكن لمساحات العمل
التي تستخدم تسجيل الدخول الموحّد تغيير ذلك من **الإعدادات ← الأمان**.
""",
            ),
        ),
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.ADDED,
        "Funnels: see where people drop off",
        """\
The new **Funnels** report shows, step by step, how many people move from one event to the next.

- Up to 10 steps per funnel
- Break down by any property
- Compare two date ranges side by side

![A funnel report]({img}/funnels.png)
""",
        is_important=True,
        support_topics=("funnels",),
        translations=(
            DemoText(
                "fr",
                "Entonnoirs : voyez où les utilisateurs décrochent",
                """\
Le nouveau rapport **Entonnoirs** montre, étape par étape, combien de personnes passent d'un
événement au suivant.

- Jusqu'à 10 étapes par entonnoir
- Ventilation selon n'importe quelle propriété
- Deux périodes comparées côte à côte

![Un rapport en entonnoir]({img}/funnels.png)
""",
            ),
            DemoText(
                "ar",
                "مسارات التحويل: اعرف أين يتوقف المستخدمون",
                """\
يُظهر تقرير **مسارات التحويل** الجديد، خطوةً بخطوة، عدد الأشخاص الذين ينتقلون من حدث إلى
الحدث التالي.

- حتى 10 خطوات في كل مسار
- تقسيم النتائج حسب أي خاصية
- مقارنة فترتين زمنيتين جنبًا إلى جنب

![تقرير مسار تحويل]({img}/funnels.png)
""",
            ),
        ),
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.FIXED,
        "Dates in exported PDFs",
        """\
Exported PDFs now show dates in your chosen format instead of ISO dates.
""",
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.CHANGED,
        "Support runbook: funnels rollout",
        """\
**Internal.** Known limits for support: funnels over 90 days may time out on the Free plan.
Point customers to the date-range picker.
""",
        is_internal=True,
    ),
    DemoNote(
        "3.0.0-beta.1",
        4,
        Category.ADDED,
        "Try workspaces in the 3.0 beta",
        """\
Beta testers can now group dashboards into **workspaces** with their own members and
permissions. Tell us what you think with the reactions below.
""",
        scheduled_ahead=timedelta(days=3),
        translations=(
            DemoText(
                "fr",
                "Essayez les espaces de travail dans la bêta 3.0",
                """\
Les testeurs de la bêta peuvent désormais regrouper leurs tableaux de bord dans des
**espaces de travail**, avec leurs propres membres et leurs propres droits. Dites-nous ce
que vous en pensez avec les réactions ci-dessous.
""",
            ),
            DemoText(
                "ar",
                "جرّب مساحات العمل في الإصدار التجريبي 3.0",
                """\
يمكن لمختبري الإصدار التجريبي الآن جمع لوحات المعلومات في **مساحات عمل** لكل منها أعضاؤها
وصلاحياتها. أخبرنا برأيك عبر التفاعلات أدناه.
""",
            ),
        ),
    ),
    DemoNote(
        "3.0.0",
        None,
        Category.REMOVED,
        "API v1 is retired",
        """\
As announced in 2.2.0, the v1 API no longer answers. Every v1 call returns `410 Gone`.
""",
        intent=Intent.SAVE,
        translations=(
            DemoText(
                "fr",
                "L'API v1 est retirée",
                """\
Comme annoncé dans la version 2.2.0, l'API v1 ne répond plus. Chaque appel à la v1 renvoie
`410 Gone`.
""",
                published=False,
            ),
            DemoText(
                "ar",
                "توقّف واجهة API v1",
                """\
كما أعلنّا في الإصدار 2.2.0، لم تعد واجهة API v1 تستجيب، وكل استدعاء لها يُرجع `410 Gone`.
""",
                published=False,
            ),
        ),
    ),
    DemoNote(
        "3.0.0",
        None,
        Category.ADDED,
        "Workspaces for every team",
        """\
Workspaces leave the beta and are available on every plan.
""",
        is_important=True,
        intent=Intent.SCHEDULE,
        translations=(
            DemoText(
                "fr",
                "Des espaces de travail pour toutes les équipes",
                """\
Les espaces de travail sortent de la bêta et sont disponibles dans toutes les offres.
""",
            ),
            DemoText(
                "ar",
                "مساحات عمل لكل الفرق",
                """\
تخرج مساحات العمل من المرحلة التجريبية وتصبح متاحة في جميع الخطط.
""",
            ),
        ),
    ),
    # Last in the list, so the notes before it keep the ids, and the history drawn for them
    # the random draws, that they had before the demo had a notice.
    DemoNote(
        "2.10.0",
        10,
        Category.SECURITY,
        "Replace API tokens created before 2.10",
        """\
API tokens created before Lumen 2.10 were written in plain text to a request log that one
of our contractors could read. The log is deleted and we see no sign that any token was
used by someone else, but as a precaution those tokens **stop working 30 days after this
notice**.

Create a new token under **Settings → API** and put it wherever your integrations use
the old one.
""",
        support_topics=("api", "token"),
        requires_acknowledgement=True,
        escalate_after_days=7,
        translations=(
            DemoText(
                "fr",
                "Remplacez les jetons d'API créés avant la version 2.10",
                """\
Les jetons d'API créés avant Lumen 2.10 étaient écrits en clair dans un journal de requêtes
auquel l'un de nos prestataires avait accès. Ce journal a été supprimé et rien n'indique
qu'un jeton ait été utilisé par quelqu'un d'autre, mais par précaution ces jetons
**cesseront de fonctionner 30 jours après cet avis**.

Créez un nouveau jeton dans **Paramètres → API** et remplacez l'ancien partout où vos
intégrations l'utilisent.
""",
            ),
            DemoText(
                "ar",
                "استبدل رموز API التي أُنشئت قبل الإصدار 2.10",
                """\
كانت رموز API التي أُنشئت قبل Lumen 2.10 تُكتب كنص مقروء في سجل طلبات كان بإمكان أحد
المتعاقدين معنا الاطلاع عليه. حذفنا السجل ولا نرى ما يدل على أن أحدًا آخر استخدم أيًّا من
هذه الرموز، لكن على سبيل الاحتياط **ستتوقف هذه الرموز عن العمل بعد 30 يومًا من هذا الإشعار**.

أنشئ رمزًا جديدًا من **الإعدادات ← API** وضعه مكان الرمز القديم حيثما تستخدمه تكاملاتك.
""",
            ),
        ),
    ),
]

LEDGER_NOTES = [
    DemoNote(
        "1.0.0",
        60,
        Category.ADDED,
        "Ledger is here",
        "Invoices, receipts and payouts in one place.",
    ),
    DemoNote(
        "1.1.0",
        20,
        Category.FIXED,
        "Rounding in multi-currency invoices",
        """\
Totals are now rounded once, at the end, so multi-currency invoices add up to the cent.
""",
    ),
]


def load(session: Session, *, password: str, now: datetime) -> dict[str, Any]:
    """Create whatever is missing of the demo data and return what scripts need to use it."""
    member = accounts.find_by_email(session, DEMO_EMAIL)
    if member is None:
        member = accounts.create_member(session, DEMO_EMAIL, password, name="Dana Demo")
    else:
        accounts.set_password(session, member, password)
        session.commit()
    products = [
        _product(
            session,
            member,
            "Lumen Analytics",
            "lumen",
            "#4f46e5",
            LUMEN_NOTES,
            now,
            other_languages=LUMEN_LANGUAGES,
        ),
        _product(session, member, "Ledger", "ledger", "#0f766e", LEDGER_NOTES, now),
    ]
    lumen = products[0]
    _readers(session, lumen, now)
    _subscribers(session, lumen, now)
    # Each step is made once and says whether it wrote anything; if one did, the roll-up
    # is counted again, once, so Support impact has figures before any worker runs.
    wrote = [
        _support_history(session, lumen, member, LUMEN_NOTES, now),
        _host_user(session, lumen, now),
        _notice_history(session, lumen, now),
        _help_history(session, lumen, now),
        _agent_sends(session, lumen, member, now),
        _activity_history(session, lumen, now),
        _reaction_history(session, lumen, now),
        _mail_history(session, lumen, member, now),
    ]
    if any(wrote):
        support_impact.refresh(session, lumen, now=now)
        session.commit()
    _traffic(session, lumen, now)
    # The Insights roll-up, counted from all of it, so its pages have figures at once.
    if any(wrote) or rollups.counted_until(session, lumen) is None:
        rollups.rebuild(session, lumen, now=now, write_turn=write_turn)
        session.commit()
    return {
        "console": {"email": DEMO_EMAIL, "password": password},
        "products": [_describe(session, product, now) for product in products],
    }


def _product(
    session: Session,
    member: TeamMember,
    name: str,
    slug: str,
    accent: str,
    notes: list[DemoNote],
    now: datetime,
    other_languages: tuple[str, ...] = (),
) -> Product:
    product = session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        product = services.create_product(
            session,
            ProductSettings(
                name=name,
                slug=slug,
                accent_color=accent,
                allowed_origins=("http://127.0.0.1:5000", "http://localhost:5000"),
            ),
            by=member,
            now=now - timedelta(days=200),
        )
    else:
        services.set_role(session, product, member, Role.OWNER, by=None, now=now)
    added = [tag for tag in other_languages if tag not in product.languages]
    if added:
        translations.set_languages(
            session,
            product,
            product.default_locale,
            [*product.languages, *added],
            by=member,
            now=product.created_at,
        )
        session.commit()
    existing = {
        (note.version, note.title): note
        for note in session.scalars(
            select(Note)
            .where(Note.product_id == product.id)
            .options(selectinload(Note.translations))
        )
    }
    pictures = _Pictures(product, accent)
    for demo in notes:
        when = now - timedelta(days=demo.days_ago) if demo.days_ago is not None else now
        intent, publish_at = demo.intent, None
        if demo.scheduled_ahead is not None:
            intent, publish_at, when = Intent.SCHEDULE, when, when - demo.scheduled_ahead
        elif demo.intent is Intent.SCHEDULE:
            publish_at = now + timedelta(days=7)
        note = existing.get((demo.version, demo.title))
        if note is None:
            note = services.create_note(
                session,
                product,
                NoteInput(
                    version=demo.version,
                    title=demo.title,
                    category=demo.category.value,
                    body_md=pictures.shown_in(demo.first_body_md or demo.body_md),
                    is_important=demo.is_important,
                    is_internal=demo.is_internal,
                    support_topics=demo.support_topics,
                    holdback_percent=demo.holdback_percent,
                    requires_acknowledgement=demo.requires_acknowledgement,
                    escalate_after_days=demo.escalate_after_days,
                ),
                intent=intent,
                publish_at=publish_at,
                by=member,
                now=when,
            )
        _translate(session, note, demo, pictures, member, when, now)
    return product


def _translate(
    session: Session,
    note: Note,
    demo: DemoNote,
    pictures: _Pictures,
    member: TeamMember,
    when: datetime,
    now: datetime,
) -> None:
    """Add the translations the note lacks. A note still as it first went out is edited
    now, after its ``outdated`` languages were translated and before the others."""
    missing = [text for text in demo.translations if translations.find(note, text.locale) is None]
    if not missing:
        return
    day = timedelta(days=1)
    first_body = demo.first_body_md and pictures.shown_in(demo.first_body_md)
    if note.body_md == first_body:
        _write_texts(
            session,
            note,
            [t for t in missing if t.locale in demo.outdated],
            pictures,
            member,
            min(when + day, now),
        )
        services.update_note(
            session,
            note,
            replace(NoteInput.of(note), body_md=pictures.shown_in(demo.body_md)),
            by=member,
            now=min(when + 2 * day, now),
        )
        missing = [t for t in missing if t.locale not in demo.outdated]
        when += 2 * day
    _write_texts(session, note, missing, pictures, member, min(when + day, now))
    session.commit()


def _write_texts(
    session: Session,
    note: Note,
    texts: list[DemoText],
    pictures: _Pictures,
    member: TeamMember,
    at: datetime,
) -> None:
    for text in texts:
        translations.save(
            session,
            note,
            text.locale,
            title=text.title,
            body_md=pictures.shown_in(text.body_md),
            publish=text.published,
            by=member,
            now=at,
        )


class _Pictures:
    """The demo's screenshots of a product, stored the first time a text shows one."""

    def __init__(self, product: Product, accent: str) -> None:
        self.product, self.accent = product, accent
        self.paths: dict[str, str] = {}

    def shown_in(self, body_md: str) -> str:
        """``body_md`` with each ``{img}/<name>`` replaced by the stored picture's path."""
        if "{img}/" not in body_md:
            return body_md
        self.paths = self.paths or _screenshots(self.product, self.accent)
        for name, path in self.paths.items():
            body_md = body_md.replace("{img}/" + name, path)
        return body_md


# Screenshots ------------------------------------------------------------------------
# Drawn here and uploaded as an editor's would be, so the demo shows images that Tidings
# serves itself. The same drawing gives the same bytes, hence the same file: loading the
# demo again stores nothing new.


def _screenshots(product: Product, accent: str) -> dict[str, str]:
    """Store the demo's pictures for ``product``; their paths by the names notes use."""
    drawings = {"dashboard.png": _dashboard(accent), "funnels.png": _funnels(accent)}
    paths = {}
    for name, picture in drawings.items():
        out = io.BytesIO()
        picture.save(out, "PNG")
        stored = images.store(
            media.folder(), product.id, out.getvalue(), media_type="image/png", filename=name
        )
        paths[name] = media.path(product.id, stored.name)
    return paths


INK, MUTED, LINE, PAPER = "#0f172a", "#64748b", "#e2e8f0", "#f8fafc"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _dashboard(accent: str) -> Image.Image:
    """A dashboard: a sidebar, three numbers, a line chart of visits and a bar chart."""
    picture = Image.new("RGB", (960, 540), PAPER)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 180, 540), fill=INK)
    draw.text((24, 24), "Lumen", fill="white", font=_font(22))
    for row, label in enumerate(["Dashboard", "Reports", "Funnels", "Exports", "Settings"]):
        if row == 0:
            draw.rounded_rectangle((12, 74, 168, 106), 6, fill=accent)
        draw.text(
            (26, 80 + row * 40), label, fill="white" if row == 0 else "#cbd5e1", font=_font(15)
        )
    for column, (label, value, change) in enumerate(
        [("Visitors", "48,210", "+12%"), ("Sign-ups", "1,932", "+8%"), ("Revenue", "$23.4k", "+5%")]
    ):
        left = 204 + column * 252
        draw.rounded_rectangle((left, 24, left + 236, 124), 10, fill="white", outline=LINE)
        draw.text((left + 18, 40), label, fill=MUTED, font=_font(14))
        draw.text((left + 18, 64), value, fill=INK, font=_font(30))
        draw.text((left + 170, 72), change, fill="#059669", font=_font(16))
    draw.rounded_rectangle((204, 144, 692, 516), 10, fill="white", outline=LINE)
    draw.text((222, 160), "Visitors, last 30 days", fill=INK, font=_font(16))
    rng = random.Random(2)  # noqa: S311 - the same curve every time, so the same file
    level, points = 300.0, []
    for day in range(30):
        level = max(60.0, min(320.0, level - rng.uniform(-4, 10)))
        points.append((230 + day * 15.5, 200 + level))
    for y in range(220, 500, 56):
        draw.line((222, y, 674, y), fill=LINE)
    draw.polygon([(230, 496), *points, (points[-1][0], 496)], fill="#eef2ff")
    draw.line(points, fill=accent, width=4, joint="curve")
    draw.rounded_rectangle((712, 144, 940, 516), 10, fill="white", outline=LINE)
    draw.text((730, 160), "Top reports", fill=INK, font=_font(16))
    for row, share in enumerate([0.92, 0.74, 0.55, 0.41, 0.28]):
        top = 206 + row * 58
        draw.text((730, top), f"Report {row + 1}", fill=MUTED, font=_font(13))
        draw.rounded_rectangle((730, top + 22, 922, top + 36), 7, fill="#f1f5f9")
        draw.rounded_rectangle((730, top + 22, 730 + int(192 * share), top + 36), 7, fill=accent)
    return picture


def _funnels(accent: str) -> Image.Image:
    """A funnel report: four steps, each bar as wide as the people who reached it."""
    picture = Image.new("RGB", (960, 420), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((32, 26), "Funnel: from visit to purchase", fill=INK, font=_font(24))
    draw.text((32, 62), "Last 30 days · 48,210 people", fill=MUTED, font=_font(15))
    steps = [("Visited", 48210), ("Signed up", 9642), ("Created a report", 5303), ("Paid", 1414)]
    for row, (label, people) in enumerate(steps):
        top = 110 + row * 74
        share = people / steps[0][1]
        draw.text((32, top + 16), label, fill=INK, font=_font(16))
        draw.rounded_rectangle((220, top, 860, top + 52), 8, fill="#f1f5f9")
        draw.rounded_rectangle(
            (220, top, 220 + max(16, int(640 * share)), top + 52), 8, fill=accent
        )
        draw.text((872, top + 8), f"{share:.0%}", fill=INK, font=_font(18))
        draw.text((872, top + 30), f"{people:,}", fill=MUTED, font=_font(12))
        if row:
            dropped = 1 - people / steps[row - 1][1]
            draw.text((236, top - 18), f"{dropped:.0%} dropped off", fill="#dc2626", font=_font(12))
    return picture


def _readers(session: Session, product: Product, now: datetime) -> None:
    """End users who read, and reacted to, the product's notes, so the console has numbers.

    Created once: if the first reader exists, the readers are already there.
    """
    first = session.scalar(
        select(EndUser.id).where(
            EndUser.product_id == product.id, EndUser.external_id == "demo-reader-01"
        )
    )
    if first is not None:
        return
    rng = random.Random(2026)  # noqa: S311 - demo data, the same every time, not a secret
    readers = [
        EndUser(
            product_id=product.id,
            external_id=f"demo-reader-{number:02d}",
            attributes={"plan": rng.choice(["free", "pro", "team"])},
            locale="en",
            app_version=READERS_VERSION,
            first_seen_at=now - timedelta(days=190),
            last_seen_at=now - timedelta(hours=rng.randint(1, 72)),
        )
        for number in range(1, DEMO_READERS + 1)
    ]
    session.add_all(readers)
    session.flush()
    notes = session.scalars(select(Note).where(Note.product_id == product.id)).all()
    for note in notes:
        published = note.status_at(now) is NoteStatus.PUBLISHED
        if note.published_at is None or not published or note.is_internal:
            continue  # end users never see these
        if note.requires_acknowledgement:
            continue  # read as it is acknowledged: see _notice_history
        if versions.parse(note.version) > versions.parse(READERS_VERSION):
            continue  # the widget does not show it to them
        share = rng.uniform(0.35, 0.8)
        for reader in readers:
            if rng.random() < share:
                read_at = note.published_at + timedelta(hours=rng.randint(1, 96))
                # Read on a visit: by the last one, and not if that was before the note.
                if note.published_at < reader.last_seen_at:
                    session.add(
                        ReadReceipt(
                            end_user_id=reader.id,
                            note_id=note.id,
                            read_at=min(read_at, reader.last_seen_at),
                            channel="widget",
                        )
                    )
        for position, (reaction, comment) in enumerate(DEMO_COMMENTS.get(note.title, [])):
            when = note.published_at + timedelta(days=1)
            session.add(
                Reaction(
                    end_user_id=readers[position].id,
                    note_id=note.id,
                    reaction=reaction,
                    comment=comment,
                    created_at=when,
                    updated_at=when,
                )
            )
    session.commit()


# Demo subscribers: (name, status, frequency, categories).
DEMO_SUBSCRIBERS = [
    ("amara", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("bruno", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("chen", SubscriberStatus.CONFIRMED, Frequency.IMPORTANT, []),
    ("dita", SubscriberStatus.CONFIRMED, Frequency.DIGEST, []),
    ("elias", SubscriberStatus.CONFIRMED, Frequency.EVERY, ["Fixed", "Security"]),
    ("farah", SubscriberStatus.CONFIRMED, Frequency.IMPORTANT, []),
    ("goran", SubscriberStatus.CONFIRMED, Frequency.DIGEST, ["Added"]),
    ("hana", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("ines", SubscriberStatus.PENDING, Frequency.EVERY, []),
    ("jonas", SubscriberStatus.PENDING, Frequency.IMPORTANT, []),
    ("kofi", SubscriberStatus.UNSUBSCRIBED, Frequency.EVERY, []),
    ("lena", SubscriberStatus.BOUNCED, Frequency.EVERY, []),
]


def _subscribers(session: Session, product: Product, now: datetime) -> None:
    """Email subscribers, and the messages of the latest important note marked as sent, so
    the subscribers page and a note's delivery show something. Created once."""
    if session.scalar(select(Subscriber.id).where(Subscriber.product_id == product.id)):
        return
    joined, left = now - timedelta(days=60), now - timedelta(days=5)
    subscribers = [
        Subscriber(
            product_id=product.id,
            email=f"{name}@example.com",
            status=status,
            frequency=frequency,
            categories=categories,
            locale="en",
            created_at=joined,
            confirmed_at=None if status is SubscriberStatus.PENDING else joined,
            unsubscribed_at=left if status is SubscriberStatus.UNSUBSCRIBED else None,
            last_digest_at=mailing.digest_slot(product, now),
            hard_bounces=3 if status is SubscriberStatus.BOUNCED else 0,
        )
        for name, status, frequency, categories in DEMO_SUBSCRIBERS
    ]
    session.add_all(subscribers)
    session.flush()
    latest = session.scalar(
        select(Note)
        .where(Note.product_id == product.id, Note.is_important.is_(True), outward_clause())
        .where(Note.published_at <= now)
        .order_by(Note.published_at.desc())
        .limit(1)
    )
    if latest is not None and latest.published_at is not None:
        sent_at = latest.published_at + timedelta(minutes=2)
        for subscriber in subscribers:
            if subscriber.status is SubscriberStatus.CONFIRMED and (
                subscriptions.Preferences.of(subscriber).wants(latest)
            ):
                session.add(
                    OutboxMessage(
                        product_id=product.id,
                        subscriber_id=subscriber.id,
                        note_id=latest.id,
                        kind=OutboxKind.NOTE,
                        status=OutboxStatus.SENT,
                        attempts=1,
                        created_at=latest.published_at,
                        next_attempt_at=latest.published_at,
                        sent_at=sent_at,
                    )
                )
    session.commit()


# Support history ----------------------------------------------------------------------
# Lumen's customers, what they read and the tickets they opened over the demo's months, so
# Support impact opens on real figures. Drawn from a seed, so every load tells the same
# story. The customers and their receipts are written with bulk inserts: 5,000 users and
# 30,000 receipts took 3.9 s as ORM objects, 0.95 s so. The tickets take the path every
# ticket takes (tickets.check_ticket, then tickets.store_many, as the CSV import stores
# them): the demo's 3,600 or so took 2.1 s of CPU on SQLite stored one at a time, 0.33 s
# stored together, and are the same rows.

DEMO_CUSTOMERS = 5_000
CUSTOMER_ID = "lumen-customer-{:04d}"
SUPPORT_SEED = 14
# Most customers ran Lumen 1.x before the demo's first release; a few signed up since.
ESTABLISHED_SHARE = 0.97
OLD_VERSION = "1.9.2"
# Customers who stopped using Lumen at some point; the others were seen in the last week.
CHURNED_SHARE = 0.25
# How far behind the newest release customers run (0 to 3 releases), and how many joined
# the beta or run a build that does not say its version.
RELEASES_BEHIND = [70, 18, 8, 4]
BETA_SHARE = 0.05
NO_VERSION_SHARE = 0.03
# The host signs the address of this share of customers, so a ticket that knows only the
# address finds its user; a ticket brings the requester's id (Zendesk's external_id) this
# often, else only the address; and some tickets come from people the widget never saw.
EMAIL_SHARE = 0.65
TICKETS_WITH_USER_ID = 0.8
UNKNOWN_REQUESTERS = 90
FIRST_DESK_ID = 10_001
# Tickets a customer opens a day about anything, on average (each customer's own rate
# varies around it), and the share of those about one of the notes' topics: customers
# ask about exports and invoices before a note changes them too, which is what a note's
# "before" figure counts.
EVERYDAY_TICKETS = 0.0038
TOPIC_SHARE = 0.12
# The share of an engaged customer who reads a note that pops up, and one that does not;
# of the readers of one that pops up, who read it from its e-mail, and in its popup.
POPUP_READS, PANEL_READS = 0.6, 0.35
EMAIL_READS, IN_THE_POPUP = 0.03, 0.7
COMPANIES = ["acme", "globex", "initech", "hooli", "umbrella", "wonka", "tyrell", "stark"]
PLANS = ["free", "pro", "team", "business"]
LOCALES = ["en"] * 8 + ["fr", "ar"]


@dataclass(frozen=True)
class TopicTickets:
    """The tickets a note's change brings among the users it went out to, in its window:
    the chance that a user who was not told opens one, and the share of that chance left
    for those who read the note, and for those shown its badge or popup who did not."""

    subjects: tuple[tuple[str, tuple[str, ...]], ...]  # (subject, tags)
    chance: float
    after_reading: float
    after_badge: float = 1.0


# By note title. Scheduled reports confused nobody, so its verdict honestly stays "Not
# enough data yet"; session expiry, held back from a fifth of its users, shows the effect.
SUPPORT_TOPICS = {
    "The classic dashboard is gone": TopicTickets(
        (
            ("My saved layout is gone after the update", ("layout",)),
            ("Cards moved around on my dashboard", ("layout", "dashboard")),
            ("How do I get the classic dashboard back?", ("layout", "how-to")),
        ),
        chance=0.04,
        after_reading=0.45,
    ),
    "Export any chart as PNG or CSV": TopicTickets(
        (
            ("Export to CSV produces an empty file", ("export", "csv", "bug")),
            ("Exported PNG has a black background", ("export", "bug")),
            ("Where is the export button on a chart?", ("export", "how-to")),
            ("CSV export stops at 1,000 rows", ("export", "csv")),
        ),
        chance=0.05,
        after_reading=0.4,
    ),
    "API v1 will be retired in version 3.0": TopicTickets(
        (
            ("Our integration gets a deprecation warning", ("api",)),
            ("How do I move from API v1 to v2?", ("api", "how-to")),
            ("Cursor pagination in API v2 skips records", ("api", "bug")),
        ),
        chance=0.015,
        after_reading=0.6,
    ),
    "Billing per seat, and invoices with VAT on every line": TopicTickets(
        (
            ("Invoice shows the wrong VAT", ("billing", "invoice")),
            ("Why did our bill go up this month?", ("billing",)),
            ("Our VAT number is missing from the invoice", ("invoice",)),
            ("Who counts as an active seat?", ("billing", "how-to")),
        ),
        chance=0.06,
        after_reading=0.45,
    ),
    "Scheduled reports by email": TopicTickets(
        (
            ("Scheduled report arrived without charts", ("scheduled-reports",)),
            ("Can a scheduled report go to a mailing list?", ("scheduled-reports", "how-to")),
        ),
        chance=0.006,
        after_reading=1.0,
    ),
    "Session cookies now expire after 12 hours": TopicTickets(
        (
            ("I keep getting logged out", ("login",)),
            ("Logged out in the middle of editing a report", ("session", "bug")),
            ("Why do I have to log in every morning?", ("login", "session")),
        ),
        chance=0.09,
        after_reading=0.25,
        after_badge=0.4,
    ),
    "Funnels: see where people drop off": TopicTickets(
        (
            ("Funnels report times out for 90 days", ("funnels", "performance")),
            ("How do I break down funnels by plan?", ("funnels", "how-to")),
        ),
        chance=0.02,
        after_reading=0.6,
    ),
}
# What customers ask about whatever the release: (subject, tags, weight).
EVERYDAY_SUBJECTS = [
    ("How do I invite a teammate?", ("how-to", "team"), 6),
    ("Alert fired twice for the same threshold", ("alerts", "bug"), 3),
    ("Slack alerts stopped arriving", ("alerts", "slack"), 3),
    ("Chart shows yesterday's numbers", ("data",), 4),
    ("Numbers differ from our own database", ("data", "question"), 4),
    ("Dashboard is slow to load", ("performance",), 4),
    ("Can viewers add annotations?", ("permissions", "question"), 2),
    ("Single sign-on with Okta fails", ("sso",), 2),
    ("Feature request: dark mode for PDFs", ("feature-request",), 3),
    ("Weekly report starts on the wrong day", ("reports", "bug"), 2),
    ("Search does not find my report", ("search",), 2),
    ("Can we pay by bank transfer?", ("billing",), 2),
    ("Please send last month's invoice again", ("invoice",), 2),
    ("Please delete my account", ("account", "privacy"), 1),
]


def _customer_email(number: int, company: str) -> str:
    """The address of the demo's customer ``number``, working at ``company``."""
    return f"customer{number:04d}@{company}.example"


@dataclass
class _Customer:
    """A demo end user as drawn; ``id`` once its row is written."""

    external_id: str
    email: str | None
    app_version: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    plan: str
    locale: str
    engagement: float  # how readily they open what the widget shows them
    id: int = 0


@dataclass(frozen=True)
class _Ticket:
    created_at: datetime
    subject: str
    tags: tuple[str, ...]
    customer: _Customer | None  # None: someone the widget never saw, known by ``email``
    email: str | None = None


def _support_history(
    session: Session, product: Product, member: TeamMember, demos: list[DemoNote], now: datetime
) -> bool:
    """Customers, their read receipts and their tickets from a Zendesk connection. Created
    once: if the first customer exists, the history is already there. Returns whether it
    was made now."""
    first = session.scalar(
        select(EndUser.id).where(
            EndUser.product_id == product.id, EndUser.external_id == CUSTOMER_ID.format(1)
        )
    )
    if first is not None:
        return False
    _support_settings(session, product, member, demos, now)
    secret_key = current_app.config["SECRET_KEY"]
    window = timedelta(days=product.support_window_days)
    rng = random.Random(SUPPORT_SEED)  # noqa: S311 - demo data, the same every time
    notes = _sent(session, product, now)
    customers = _draw_customers(rng, notes, now)
    _insert_customers(session, product, customers, secret_key)
    read = _insert_receipts(session, rng, customers, notes, window, now)
    drawn = _draw_tickets(rng, customers, notes, read, window, now)
    drawn.sort(key=lambda ticket: ticket.created_at)
    connection = support_desks.connect(
        session,
        product,
        SupportDesk.ZENDESK,
        secret=secrets.token_urlsafe(32),  # as Zendesk shows one to paste in
        actor=member,
        now=drawn[0].created_at - timedelta(days=1),
    )
    _store_tickets(session, rng, product, connection, drawn, secret_key, now)
    # What the deliveries would have counted, had they come in one by one.
    connection.deliveries, connection.last_delivery_at = len(drawn), drawn[-1].created_at
    session.commit()
    return True


def _support_settings(
    session: Session, product: Product, member: TeamMember, demos: list[DemoNote], now: datetime
) -> None:
    """Give notes an older demo made without them their topics and hold-back, so that the
    history drawn next is about the notes as they are. The hold-back is set on the row:
    an editor cannot change it once a note is out, but the history drawn next is one in
    which it was there from the start."""
    for demo in demos:
        note = session.scalar(
            select(Note).where(
                Note.product_id == product.id,
                Note.version == demo.version,
                Note.title == demo.title,
            )
        )
        if note is not None and (demo.support_topics or demo.holdback_percent):
            wanted = replace(NoteInput.of(note), support_topics=demo.support_topics)
            services.update_note(session, note, wanted, by=member, now=now)
            note.holdback_percent = demo.holdback_percent


@dataclass(frozen=True)
class _Sent:
    """A note end users can have seen, as plain values: the loops below read them some
    200,000 times, where ORM attributes cost two seconds."""

    id: int
    title: str
    version: str
    published_at: datetime
    is_important: bool
    holdback_percent: int
    including: frozenset[str]  # the versions, of those the demo's customers run, it is in
    requires_acknowledgement: bool = False


def _sent(session: Session, product: Product, now: datetime) -> list[_Sent]:
    """The notes end users can have seen (published, not internal), oldest first."""
    notes = _sent_notes(session, product, now)
    present = {note.version for note in notes} | {OLD_VERSION}
    return sorted(
        (
            _Sent(
                id=note.id,
                title=note.title,
                version=note.version,
                published_at=note.published_at,
                is_important=note.is_important,
                holdback_percent=note.holdback_percent,
                including=frozenset(support_impact.including(note.version, present)),
                requires_acknowledgement=note.requires_acknowledgement,
            )
            for note in notes
            if note.published_at is not None
        ),
        key=lambda note: (note.published_at, note.id),
    )


def _draw_customers(rng: random.Random, notes: list[_Sent], now: datetime) -> list[_Customer]:
    """Customers spread over the demo's months: when they were first and last seen, and the
    release they ran then, most the newest and some a few behind. A release came out when
    its first note did: a note added to it later (the notice) is no release of its own."""
    first_out: dict[str, datetime] = {}
    for note in notes:  # oldest first
        first_out.setdefault(note.version, note.published_at)
    releases = sorted((when, version) for version, when in first_out.items())
    stable = [(when, v) for when, v in releases if not versions.parse(v).is_prerelease]
    start = releases[0][0] - timedelta(days=14)
    customers = []
    for number in range(1, DEMO_CUSTOMERS + 1):
        if rng.random() < ESTABLISHED_SHARE:
            first_seen = start - timedelta(days=rng.uniform(1, 400))
        else:
            first_seen = start + (now - start) * rng.random()
        since = max(first_seen, start)
        if rng.random() < CHURNED_SHARE:
            last_seen = since + (now - since) * rng.random()
        else:
            last_seen = max(since, now - timedelta(hours=rng.uniform(1, 24 * 7)))
        running = [v for when, v in stable if when <= last_seen]
        behind = rng.choices(range(len(RELEASES_BEHIND)), weights=RELEASES_BEHIND)[0]
        version = running[max(0, len(running) - 1 - behind)] if running else OLD_VERSION
        if last_seen > releases[-1][0] and rng.random() < BETA_SHARE:
            version = releases[-1][1]
        email = _customer_email(number, rng.choice(COMPANIES))
        customers.append(
            _Customer(
                external_id=CUSTOMER_ID.format(number),
                email=email if rng.random() < EMAIL_SHARE else None,
                app_version=None if rng.random() < NO_VERSION_SHARE else version,
                first_seen_at=first_seen,
                last_seen_at=last_seen,
                plan=rng.choice(PLANS),
                locale=rng.choice(LOCALES),
                engagement=0.2 + 1.6 * rng.betavariate(2, 2),
            )
        )
    return customers


def _insert_customers(
    session: Session, product: Product, customers: list[_Customer], secret_key: str
) -> None:
    """Write the customers in one statement and note the ids they got."""
    rows = [
        {
            "product_id": product.id,
            "external_id": customer.external_id,
            "attributes": {"plan": customer.plan},
            "locale": customer.locale,
            "app_version": customer.app_version,
            "first_seen_at": customer.first_seen_at,
            "last_seen_at": customer.last_seen_at,
            "email_key": tickets.email_key(secret_key, customer.email) if customer.email else None,
        }
        for customer in customers
    ]
    session.execute(insert(cast(Table, EndUser.__table__)), rows)
    written = session.execute(
        select(EndUser.external_id, EndUser.id).where(
            EndUser.product_id == product.id,
            EndUser.external_id.in_([customer.external_id for customer in customers]),
        )
    )
    ids = {external_id: end_user_id for external_id, end_user_id in written}
    for customer in customers:
        customer.id = ids[customer.external_id]


def _reaches(customer: _Customer, note: _Sent) -> bool:
    """Whether the widget could show the customer the note: seen since it was published,
    on a version that includes it or on none the host told of."""
    if customer.last_seen_at < note.published_at:
        return False
    return customer.app_version is None or customer.app_version in note.including


def _exposed(customer: _Customer, note: _Sent, window: timedelta) -> bool:
    """Whether the note went out to the customer as Support impact counts it: it reaches
    them, and they were first seen before its window closed."""
    return _reaches(customer, note) and customer.first_seen_at < note.published_at + window


def _insert_receipts(
    session: Session,
    rng: random.Random,
    customers: list[_Customer],
    notes: list[_Sent],
    window: timedelta,
    now: datetime,
) -> set[tuple[int, int]]:
    """What each customer read: popups the most, mostly in the popup and a few from the
    e-mail (only important notes are e-mailed as they go out), the others in the widget's
    panel. A note held back from them is read as one that pops up for nobody, and only in
    the panel: it is not mailed to them. Returns the (customer id, note id) pairs read."""
    rows: list[dict[str, Any]] = []
    read: set[tuple[int, int]] = set()
    for note in notes:
        if note.requires_acknowledgement:
            continue  # read as it is acknowledged: see _notice_history
        share, by_email = (POPUP_READS, EMAIL_READS) if note.is_important else (PANEL_READS, 0.0)
        for customer in customers:
            if not _reaches(customer, note):
                continue
            chance, emailed = share * customer.engagement, by_email
            if not _exposed(customer, note, window):
                chance *= 0.1  # a newcomer is not shown old notes as new
            elif holdback.in_control(note.id, customer.external_id, note.holdback_percent):
                chance, emailed = PANEL_READS * customer.engagement, 0.0
            if rng.random() >= chance:
                continue
            begin = max(note.published_at, customer.first_seen_at)
            read_at = begin + timedelta(days=rng.expovariate(1 / 1.5))
            read.add((customer.id, note.id))
            how, channel = rng.random(), "widget"
            if how < emailed:
                channel = "email"
            elif emailed and how < emailed + IN_THE_POPUP:  # it popped up for them
                channel = "popup"
            rows.append(
                {
                    "end_user_id": customer.id,
                    "note_id": note.id,
                    "read_at": min(read_at, customer.last_seen_at, now),
                    "channel": channel,
                }
            )
    session.execute(insert(cast(Table, ReadReceipt.__table__)), rows)
    return read


def _draw_tickets(
    rng: random.Random,
    customers: list[_Customer],
    notes: list[_Sent],
    read: set[tuple[int, int]],
    window: timedelta,
    now: datetime,
) -> list[_Ticket]:
    """Everyday tickets at each customer's own rate while they use Lumen, fewer at
    weekends; the tickets each topic note's change brought among those it went out to,
    fewer among those told; and some from people the widget never saw."""
    start = notes[0].published_at - window
    drawn = []
    for customer in customers:
        rate = EVERYDAY_TICKETS * rng.gammavariate(0.6, 1 / 0.6)
        begin = max(customer.first_seen_at, start)
        days = (min(customer.last_seen_at + timedelta(days=1), now) - begin) / timedelta(days=1)
        offset = rng.expovariate(rate)
        while offset < days:
            moment = begin + timedelta(days=offset)
            offset += rng.expovariate(rate)
            subject, tags = _everyday_subject(rng, notes)
            # Fewer at weekends. Drawn whatever the day, so that the draws after do not
            # depend on the calendar date the demo is loaded on.
            at_weekend = rng.random() < 0.4
            if moment.weekday() < 5 or at_weekend:
                drawn.append(_Ticket(moment, subject, tags, customer))
    for note in notes:
        topic = SUPPORT_TOPICS.get(note.title)
        if topic is None:
            continue
        for customer in customers:
            begin = max(note.published_at, customer.first_seen_at)
            end = min(note.published_at + window, customer.last_seen_at + timedelta(days=1), now)
            if not _exposed(customer, note, window) or begin >= end:
                continue
            if (customer.id, note.id) in read:
                chance = topic.chance * topic.after_reading
            elif holdback.in_control(note.id, customer.external_id, note.holdback_percent):
                chance = topic.chance
            else:
                chance = topic.chance * topic.after_badge
            if rng.random() < chance:
                # Most come in the first days after the change.
                days = rng.expovariate(1 / 3)
                if begin + timedelta(days=days) >= end:
                    days = (end - begin) / timedelta(days=1) * rng.random()
                subject, tags = rng.choice(topic.subjects)
                drawn.append(_Ticket(begin + timedelta(days=days), subject, tags, customer))
    for number in range(1, UNKNOWN_REQUESTERS + 1):
        moment = start + (now - start) * rng.random()
        email = f"visitor{number:03d}@{rng.choice(COMPANIES)}.example"
        drawn.append(_Ticket(moment, *_everyday_subject(rng, notes), None, email))
    return drawn


def _everyday_subject(rng: random.Random, notes: list[_Sent]) -> tuple[str, tuple[str, ...]]:
    """What an everyday ticket is about: now and then one of the notes' topics."""
    topics = [SUPPORT_TOPICS[note.title] for note in notes if note.title in SUPPORT_TOPICS]
    if topics and rng.random() < TOPIC_SHARE:
        return rng.choice(rng.choice(topics).subjects)
    weights = [weight for *_, weight in EVERYDAY_SUBJECTS]
    subject, tags, _ = rng.choices(EVERYDAY_SUBJECTS, weights=weights)[0]
    return subject, tags


def _store_tickets(
    session: Session,
    rng: random.Random,
    product: Product,
    connection: SupportConnection,
    drawn: list[_Ticket],
    secret_key: str,
    now: datetime,
) -> None:
    """Store the tickets, in the order opened, as the desk would have sent them: numbered,
    with the requester's id and address or only the address."""
    checked: list[tickets.TicketInput] = []
    for number, ticket in enumerate(drawn, start=FIRST_DESK_ID):
        raw: dict[str, Any] = {
            "external_id": number,
            "created_at": ticket.created_at,
            "tags": list(ticket.tags),
            "subject": ticket.subject,
        }
        customer = ticket.customer
        if customer is None:
            raw["email"] = ticket.email
        else:
            raw["email"] = customer.email
            if customer.email is None or rng.random() < TICKETS_WITH_USER_ID:
                raw["user_id"] = customer.external_id
        checked.append(tickets.check_ticket(raw, source=connection.source, now=now))
    tickets.store_many(
        session, product, checked, secret_key=secret_key, connection=connection, now=now
    )


# The demo host's user ----------------------------------------------------------------
# The user the demo host page signs in (app/demo_host.py) is a customer of long standing:
# they read most notes, once wrote in about an empty export, and never opened the note
# that answers it. So the page shows them the notice to acknowledge, help before
# "Contact support" finds that note for "export is empty", and Support → Look up finds
# them by their address.

DEMO_HOST_EMAIL = f"{DEMO_HOST_USER}@example.com"  # the address the host page signs
DEMO_HOST_ATTRIBUTES = {"plan": "pro", "role": "admin"}  # as the host page sends them
DEMO_HOST_VERSION = "2.10.0"
# The notes they have not read: the latest release (which the page pops up) and the one
# their question is about.
HOST_UNREAD = ("Export any chart as PNG or CSV",)
HOST_TICKET = ("Export to CSV produces an empty file", ("export", "csv", "bug"))


def _host_user(session: Session, product: Product, now: datetime) -> bool:
    """The demo host's user with their history; created once. A user the host page made
    before the demo knew them keeps what they have, and gets the address key lookups
    need. Returns whether the user was made now."""
    secret_key = current_app.config["SECRET_KEY"]
    email_key = tickets.email_key(secret_key, DEMO_HOST_EMAIL)
    user = session.scalar(
        select(EndUser).where(
            EndUser.product_id == product.id, EndUser.external_id == DEMO_HOST_USER
        )
    )
    if user is not None:
        if user.email_key is None:
            user.email_key = email_key
            session.commit()
        return False
    rng = random.Random(DEMO_HOST_USER)  # noqa: S311 - demo data, the same every time
    user = EndUser(
        product_id=product.id,
        external_id=DEMO_HOST_USER,
        attributes=DEMO_HOST_ATTRIBUTES,
        locale="en",
        app_version=DEMO_HOST_VERSION,
        first_seen_at=now - timedelta(days=200),
        last_seen_at=now - timedelta(days=2),
        email_key=email_key,
    )
    session.add(user)
    session.flush()
    version = versions.parse(DEMO_HOST_VERSION)
    latest = now - timedelta(days=12)  # what came out since is the latest release: unread
    for note in _sent_notes(session, product, now):
        published = note.published_at
        assert published is not None  # noqa: S101 - published notes only
        if (
            published > latest
            or note.title in HOST_UNREAD
            or versions.parse(note.version) > version
        ):
            continue
        read_at = published + timedelta(hours=rng.uniform(1, 72))
        channel = "email" if note.is_important else "widget"
        session.add(
            ReadReceipt(end_user_id=user.id, note_id=note.id, read_at=read_at, channel=channel)
        )
    connection = session.scalar(
        select(SupportConnection).where(SupportConnection.product_id == product.id)
    )
    subject, tags = HOST_TICKET
    ticket = tickets.check_ticket(
        {
            "external_id": FIRST_DESK_ID - 1,  # numbered before the drawn history
            "created_at": now - timedelta(days=40),
            "subject": subject,
            "tags": list(tags),
            "user_id": DEMO_HOST_USER,
            "email": DEMO_HOST_EMAIL,
        },
        source=None if connection is None else connection.source,
        now=now,
    )
    tickets.store_many(
        session, product, [ticket], secret_key=secret_key, connection=connection, now=now
    )
    session.commit()
    return True


def _sent_notes(session: Session, product: Product, now: datetime) -> list[Note]:
    """The product's notes end users can see now (published, not internal), oldest first."""
    return [
        note
        for note in session.scalars(
            select(Note)
            .where(Note.product_id == product.id, outward_clause())
            .order_by(Note.published_at, Note.id)
        )
        if note.published_at is not None and note.status_at(now) is NoteStatus.PUBLISHED
    ]


# The must-acknowledge notice -----------------------------------------------------------
# Lumen's security notice went out ten days ago. Everyone the widget showed it to since has
# its read (as a popup: the modal marks it read); most pressed "I understand" at once or on
# a later page view, some keep closing it. Customers who subscribed to Lumen's notes from
# the widget are linked to their end user, and those of them still without an
# acknowledgement seven days after it was first shown to them were e-mailed it, as the
# worker does it (notices.escalate_due); half of those came back and acknowledged it soon
# after. The e-mails are marked sent: the demo mails nobody.

NOTICE_SEED = 15
# Of the users shown the notice: who press "I understand" the first time, and who do on a
# later page view (some days on, if they come back); the rest close it each time.
ACK_AT_ONCE, ACK_LATER = 0.55, 0.25
ACK_AFTER_ESCALATION = 0.5
# Customers with a known address who also get Lumen's notes by e-mail, linked to their end
# user as the widget's "Email me" links them; most confirmed, a few left since.
SUBSCRIBED_SHARE = 0.08
SUBSCRIBER_LEFT_SHARE = 0.1


def _notice_history(session: Session, product: Product, now: datetime) -> bool:
    """Reads, acknowledgements and escalations of the product's must-acknowledge notices;
    made once (if the first notice has an acknowledgement, they are there). Returns whether
    they were made now."""
    notice = session.scalar(
        select(Note)
        .where(Note.product_id == product.id, Note.requires_acknowledgement.is_(True))
        .order_by(Note.id)
        .limit(1)
    )
    if notice is None or notice.published_at is None or notice.escalate_after_days is None:
        return False
    done = select(Acknowledgement.note_id).where(Acknowledgement.note_id == notice.id)
    if session.scalar(done.limit(1)) is not None:
        return False
    rng = random.Random(NOTICE_SEED)  # noqa: S311 - demo data, the same every time
    linked = _link_subscribers(session, rng, product, now)
    published = notice.published_at
    wait = timedelta(days=notice.escalate_after_days, minutes=1)
    on = support_impact.including(notice.version, support_impact.app_versions(session, product.id))
    shown_to = session.execute(
        select(EndUser.id, EndUser.first_seen_at, EndUser.last_seen_at)
        .where(
            EndUser.product_id == product.id,
            EndUser.external_id != DEMO_HOST_USER,  # the host page shows it to them first
            EndUser.last_seen_at >= published,
            or_(EndUser.app_version.is_(None), EndUser.app_version.in_(on)),
        )
        .order_by(EndUser.id)
    ).all()
    receipts: list[dict[str, Any]] = []
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    back: list[tuple[int, datetime]] = []  # (user, last seen) for those the e-mail brought back
    escalate_at: set[datetime] = set()  # the due times, up to now, of those who are owed one
    for user_id, first_seen, last_seen in shown_to:
        back_until = min(last_seen, now)
        shown = min(max(published, first_seen) + timedelta(days=rng.expovariate(2)), back_until)
        receipts.append(
            {"end_user_id": user_id, "note_id": notice.id, "read_at": shown, "channel": "popup"}
        )
        # A user is e-mailed the notice once their own exposure (the popup read) is old
        # enough: the worker's next minute after that finds them due.
        due = shown + wait
        roll = rng.random()
        acked: datetime | None = None
        if roll < ACK_AT_ONCE:
            acked = shown + timedelta(seconds=rng.uniform(5, 90))
        elif roll < ACK_AT_ONCE + ACK_LATER:
            acked = shown + timedelta(days=rng.expovariate(1 / 3))
        if acked is not None and acked > back_until:
            acked = None  # not back since
        if user_id in linked and due <= now and (acked is None or acked > due):
            escalate_at.add(due)  # a minute at which nobody else falls due would e-mail none
            acked = None
            if rng.random() < ACK_AFTER_ESCALATION:
                # The e-mail brought them back to Lumen, where the widget saw them.
                answered = due + timedelta(hours=rng.expovariate(1 / 20))
                if answered <= now:
                    acked = answered
                    back.append((user_id, max(last_seen, answered)))
        if acked is not None:
            row = {"end_user_id": user_id, "note_id": notice.id, "acknowledged_at": acked}
            (before if acked <= due else after).append(row)
    acknowledgements = cast(Table, Acknowledgement.__table__)
    session.execute(insert(cast(Table, ReadReceipt.__table__)), receipts)
    if before:
        session.execute(insert(acknowledgements), before)
    # The worker's minutes at which someone owed an e-mail fell due, in order: each e-mails
    # the users due then (their own days since it was shown to them are up) who had not
    # acknowledged it by then; their later acknowledgements go in after.
    for when in sorted(escalate_at):
        if notices.escalate_due(session, now=when):
            _mark_sent(session, notice.id, OutboxKind.ESCALATION, when)
    if after:
        session.execute(insert(acknowledgements), after)
    for user_id, last_seen in back:
        session.execute(update(EndUser).where(EndUser.id == user_id).values(last_seen_at=last_seen))
    session.commit()
    return True


def _link_subscribers(
    session: Session, rng: random.Random, product: Product, now: datetime
) -> set[int]:
    """Subscribe a share of the customers with a known address to security notices by
    e-mail, linked to their end user; returns the end users linked to a confirmed
    subscriber. The address is the one the customer was drawn with, found again through
    its keyed hash. Security only, so the demo's other notes still go to its four
    subscribers who asked for every update."""
    secret_key = current_app.config["SECRET_KEY"]
    customers = session.execute(
        select(EndUser.id, EndUser.external_id, EndUser.email_key, EndUser.first_seen_at)
        .where(
            EndUser.product_id == product.id,
            EndUser.external_id.like(CUSTOMER_ID.format(0)[:-4] + "%"),
            EndUser.email_key.is_not(None),
        )
        .order_by(EndUser.id)
    ).all()
    confirmed: set[int] = set()
    rows = []
    for user_id, external_id, email_key, first_seen in customers:
        if rng.random() >= SUBSCRIBED_SHARE:
            continue
        number = int(external_id.rsplit("-", 1)[1])
        candidates = (_customer_email(number, company) for company in COMPANIES)
        email = next((c for c in candidates if tickets.email_key(secret_key, c) == email_key), None)
        if email is None:
            continue  # an address the demo did not draw
        joined = max(first_seen, now - timedelta(days=180)) + timedelta(days=rng.uniform(0, 20))
        left = rng.random() < SUBSCRIBER_LEFT_SHARE
        frequency = rng.choices(
            [Frequency.EVERY, Frequency.IMPORTANT, Frequency.DIGEST], weights=[50, 35, 15]
        )[0]
        rows.append(
            {
                "product_id": product.id,
                "email": email,
                "status": SubscriberStatus.UNSUBSCRIBED if left else SubscriberStatus.CONFIRMED,
                "frequency": frequency,
                "categories": [Category.SECURITY.value],
                "locale": "en",
                "end_user_id": user_id,
                "hard_bounces": 0,
                "link_key": secrets.token_urlsafe(16),
                "created_at": joined,
                "confirmed_at": joined,
                "unsubscribed_at": now - timedelta(days=rng.uniform(1, 60)) if left else None,
                "last_digest_at": mailing.digest_slot(product, now),
            }
        )
        if not left:
            confirmed.add(user_id)
    if rows:
        session.execute(insert(cast(Table, Subscriber.__table__)), rows)
    return confirmed


def _mark_sent(session: Session, note_id: int, kind: OutboxKind, when: datetime) -> None:
    """Mark the note's queued messages of ``kind`` sent at ``when``: the demo mails nobody."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.note_id == note_id,
            OutboxMessage.kind == kind,
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
        .values(status=OutboxStatus.SENT, attempts=1, sent_at=when + timedelta(minutes=2))
    )


# Help before a ticket -----------------------------------------------------------------
# Over the last four weeks, customers about to contact support typed what they would ask;
# the widget showed the unread notes that match it (the same ranking, on the same
# catalogue, as GET /help) and recorded what came of it, as the widget's calls would.

HELP_SEED = 16
HELP_DAYS = 28
HELP_ASKED = 700  # people who opened the support form; those shown nothing record nothing
HELP_LIMIT = 3
# What they typed: (query, weight). Some ask about what no unread note answers.
HELP_QUERIES = [
    ("export is empty", 8),
    ("csv export gives an empty file", 5),
    ("where is the export button", 3),
    ("exported png has a black background", 2),
    ("invoice shows the wrong vat", 5),
    ("why did our bill go up", 4),
    ("vat number missing on invoice", 3),
    ("I keep getting logged out", 6),
    ("session expires too soon", 3),
    ("my saved layout is gone", 3),
    ("bring back the classic dashboard", 2),
    ("funnel report times out", 3),
    ("break down a funnel by plan", 2),
    ("api token stopped working", 3),
    ("api v1 deprecation warning", 2),
    ("scheduled report arrived without charts", 1),
    ("how do I invite a teammate", 3),
    ("slack alerts stopped arriving", 2),
]
# What they chose: one of the notes answered them, or they still needed help; the rest
# closed the dialog. The best match answers most often.
HELP_ANSWERED, HELP_NEEDS_HELP = 0.42, 0.38
BEST_MATCH_ANSWERS = 0.8


def _help_history(session: Session, product: Product, now: datetime) -> bool:
    """Help shown before a ticket over the last weeks and what came of it; made once (if
    the product has any, it is there). Returns whether it was made now."""
    if session.scalar(select(HelpRequest.id).where(HelpRequest.product_id == product.id)):
        return False
    connection = session.connection()
    loaded = catalogue.load(connection, product.widget_key, current_app.config["BASE_URL"])
    assert loaded is not None  # noqa: S101 - the product was just read
    reader = user_state.CoreStateReader()
    rng = random.Random(HELP_SEED)  # noqa: S311 - demo data, the same every time
    start = now - timedelta(days=HELP_DAYS)
    customers = session.execute(
        select(EndUser.external_id, EndUser.first_seen_at, EndUser.last_seen_at)
        .where(
            EndUser.product_id == product.id,
            EndUser.external_id.like(CUSTOMER_ID.format(0)[:-4] + "%"),
            EndUser.last_seen_at >= start,
        )
        .order_by(EndUser.id)
    ).all()
    queries, weights = zip(*HELP_QUERIES, strict=True)
    asked = sorted(
        (
            start + (now - start) * rng.random(),
            rng.choice(customers),
            rng.choices(queries, weights)[0],
        )
        for _ in range(HELP_ASKED)
    )
    requests: list[dict[str, Any]] = []
    shown_lists: list[list[int]] = []
    receipts: list[dict[str, Any]] = []
    answered_by: dict[str, set[int]] = {}  # reads through help, not written yet
    for moment, (external_id, first_seen, last_seen), query in asked:
        if not first_seen <= moment <= last_seen:
            continue  # they were not using Lumen then
        _, state = reader.fetch_state(connection, product.widget_key, external_id)
        if state is None:
            continue
        state.read_ids |= answered_by.get(external_id, set())
        matches = inbox.unread(
            loaded,
            state,
            attributes=state.attributes,
            app_version=versions.parse(state.app_version) if state.app_version else None,
            now=moment,
            among=help.rank(loaded, query),
            limit=HELP_LIMIT,
        )
        shown = [note.id for note, *_ in matches.entries]
        if not shown:
            continue  # nothing to show: the widget records nothing
        roll, decided_at = rng.random(), moment + timedelta(seconds=rng.uniform(10, 120))
        outcome, answer = None, None
        if roll < HELP_ANSWERED:
            outcome = "answered"
            answer = shown[0] if rng.random() < BEST_MATCH_ANSWERS else rng.choice(shown)
            answered_by.setdefault(external_id, set()).add(answer)
            receipts.append(
                {
                    "end_user_id": state.id,
                    "note_id": answer,
                    "read_at": decided_at,
                    "channel": "help",
                }
            )
        elif roll < HELP_ANSWERED + HELP_NEEDS_HELP:
            outcome = "needs_help"
        requests.append(
            {
                "product_id": product.id,
                "token": secrets.token_urlsafe(16),
                "end_user_id": state.id,
                "query": query,
                "created_at": moment,
                "outcome": outcome,
                "answered_note_id": answer,
                "decided_at": decided_at if outcome else None,
            }
        )
        shown_lists.append(shown)
    if not requests:
        return False
    # Written together, as the rows help.record_shown and help.decide write one at a time:
    # 460 requests took 1 s through them, a tenth of that so.
    table = cast(Table, HelpRequest.__table__)
    ids = session.scalars(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), requests
    ).all()
    session.execute(
        insert(cast(Table, HelpShown.__table__)),
        [
            {"help_request_id": request_id, "note_id": note_id, "position": position}
            for request_id, shown in zip(ids, shown_lists, strict=True)
            for position, note_id in enumerate(shown)
        ],
    )
    if receipts:
        session.execute(insert(cast(Table, ReadReceipt.__table__)), receipts)
    session.commit()
    return True


# Notes sent by support agents ---------------------------------------------------------
# A few agents, from the console's lookup page or a help desk's sidebar, sent the note that
# answers a recent ticket to the customer who opened it, as agent_sends.send does; all but
# the last were read since. And the demo host's user was sent the API note last month.

AGENT_SIDEBAR = "Tom Becker"
# (ticket tag, note title, via, read since)
AGENT_SENDS = [
    ("export", "Export any chart as PNG or CSV", "console", True),
    ("invoice", "Billing per seat, and invoices with VAT on every line", "sidebar", True),
    ("login", "Session cookies now expire after 12 hours", "sidebar", True),
    ("funnels", "Funnels: see where people drop off", "console", True),
    ("api", "API v1 will be retired in version 3.0", "console", False),
]
HOST_SEND = ("API v1 will be retired in version 3.0", 20)  # (note title, days ago)


def _agent_sends(session: Session, product: Product, member: TeamMember, now: datetime) -> bool:
    """Notes agents sent to customers about their tickets; made once (if the product has a
    send, they are there). Returns whether they were made now."""
    if session.scalar(select(AgentSend.id).where(AgentSend.product_id == product.id)):
        return False
    titles = {note.title: note for note in _sent_notes(session, product, now)}
    rng = random.Random(AGENT_SIDEBAR)  # noqa: S311 - demo data, the same every time
    wanted: list[tuple[EndUser, Note, str, datetime, bool]] = []
    for tag, title, via, read in AGENT_SENDS:
        note = titles.get(title)
        if note is None:
            continue
        recent = session.scalars(
            select(Ticket)
            .where(
                Ticket.product_id == product.id,
                Ticket.end_user_id.is_not(None),
                Ticket.tag_text.contains(f"|{tag}|"),
                Ticket.created_at <= now - timedelta(days=1),
            )
            .order_by(Ticket.created_at.desc())
            .limit(20)
        ).all()
        for ticket in recent:
            user = session.get_one(EndUser, ticket.end_user_id)
            sent_at = ticket.created_at + timedelta(hours=rng.uniform(0.5, 6))
            if user.external_id != DEMO_HOST_USER and note.id in lookup.visible(
                session, product, user, now=sent_at
            ):
                wanted.append((user, note, via, sent_at, read))
                break
    host = session.scalar(
        select(EndUser).where(
            EndUser.product_id == product.id, EndUser.external_id == DEMO_HOST_USER
        )
    )
    title, days_ago = HOST_SEND
    if host is not None and title in titles:
        wanted.append((host, titles[title], "sidebar", now - timedelta(days=days_ago), True))
    for user, note, via, sent_at, read in wanted:
        sent = agent_sends.send(
            session,
            product,
            user,
            note.id,
            agent=AGENT_SIDEBAR if via == "sidebar" else member.name or member.email,
            sent_by=None if via == "sidebar" else member,
            via=via,
            now=sent_at,
        )
        _mark_sent(session, note.id, OutboxKind.AGENT, sent_at)
        if read:
            sent.read_at = sent_at + timedelta(hours=rng.uniform(1, 30))
            # Recorded as the widget records the read of a pinned note: with the channel
            # "agent", unless the user had read it before.
            reads.record_read(
                session.connection(), user.id, note.id, channel="agent", now=sent.read_at
            )
    session.commit()
    return bool(wanted)


def _describe(session: Session, product: Product, now: datetime) -> dict[str, Any]:
    notes = session.scalars(
        select(Note).where(Note.product_id == product.id).order_by(Note.id)
    ).all()
    return {
        "slug": product.slug,
        "name": product.name,
        "widget_key": product.widget_key,
        "identity_secret": product.identity_secret,
        "languages": translations.product_languages(product),
        "support": _support_summary(session, product),
        "notes": [
            {
                "id": note.id,
                "version": note.version,
                "title": note.title,
                "status": note.status_at(now).value,
                "internal": note.is_internal,
            }
            for note in notes
        ],
    }


def _support_summary(session: Session, product: Product) -> str | None:
    """One line on the product's support data, for whoever loaded the demo; None without."""
    count = session.scalar(select(func.count()).where(Ticket.product_id == product.id))
    if not count:
        return None
    users = session.scalar(select(func.count()).where(EndUser.product_id == product.id))
    desks = session.scalars(
        select(SupportConnection.desk).where(SupportConnection.product_id == product.id)
    )
    line = (
        f"{count:,} tickets from {', '.join(sorted(d.label for d in desks))}, {users:,} end users"
    )
    held = session.execute(
        select(Note.title, Note.holdback_percent).where(
            Note.product_id == product.id, Note.holdback_percent > 0
        )
    ).first()
    if held is not None:
        line += f"; “{held.title}” held back from {held.holdback_percent} % of them"
    return line + ": see Support impact in the console."


# Daily sightings ------------------------------------------------------------------------
# What the widget's notes endpoint wrote, as reads.see does, on each UTC day it first saw
# one of Lumen's users: their version then, and the day and version it had seen them on
# before. People come on working days far more than at weekends, each at their own rate
# and a little more often as the weeks go on; they move to each release some days after it
# comes out, each at their own pace, up to the version they run now; and the widget saw
# them on every day they read a note, acknowledged one or asked for help, on a version
# with that note. Weekly active users, versions in use and who each note went out to are
# counted from these rows.

ACTIVITY_SEED = 17
HISTORY_DAYS = 56
# Days drawn before the history, so that its first rows know the user's day before (a
# gap of over a week counts as a week).
LEAD_IN_DAYS = 14
WEEKEND_VISITS = 0.2  # a weekend day's chance of a visit, of a working day's
UPGRADE_DAYS = 4.0  # how long users take to install a release, on average


def _activity_history(session: Session, product: Product, now: datetime) -> bool:
    """The days the widget saw the product's users over the last weeks; made once (if a
    demo customer has one, they are there). Returns whether they were made now."""
    drawn = select(EndUserDay.end_user_id).join(EndUser, EndUser.id == EndUserDay.end_user_id)
    customers = EndUser.external_id.like(CUSTOMER_ID.format(0)[:-4] + "%")
    if session.scalar(drawn.where(EndUser.product_id == product.id, customers).limit(1)):
        return False
    first_out: dict[str, datetime] = {}
    for note in _sent(session, product, now):  # oldest first
        first_out.setdefault(note.version, note.published_at)
    releases = sorted(
        (when, version, versions.parse(version)) for version, when in first_out.items()
    )
    calendar = _Calendar.of(now)
    events = _user_events(session, product)
    users = session.execute(
        select(
            EndUser.id,
            EndUser.product_id,
            EndUser.first_seen_at,
            EndUser.last_seen_at,
            EndUser.app_version,
        )
        .where(
            EndUser.product_id == product.id,
            EndUser.last_seen_at >= calendar.midnights[calendar.lead_in],
        )
        .order_by(EndUser.id)
    ).all()
    rng = random.Random(ACTIVITY_SEED)  # noqa: S311 - demo data, the same every time
    rows: list[dict[str, Any]] = []
    for user in users:
        moves = _upgrades(rng, user, releases, events.get(user.id, []))
        rows.extend(_sightings(rng, user, moves, events.get(user.id, []), calendar, now))
    if not rows:
        return False
    table = cast(Table, EndUserDay.__table__)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # A day the widget already wrote for the demo host's user stays as it was.
    session.execute(dialect.insert(table).on_conflict_do_nothing(), rows)
    session.commit()
    return True


@dataclass(frozen=True)
class _Calendar:
    """The days drawn, from the lead-in to today, by their position: their midnights, and
    how likely a visit is on each, as a share of a user's chance on a working day."""

    days: list[date]
    midnights: list[datetime]
    busy: list[float]
    lead_in: int  # the position of the history's first day

    @classmethod
    def of(cls, now: datetime) -> _Calendar:
        """From the lead-in to ``now``'s day: rarer at weekends, a little commoner as the
        weeks go on."""
        today = now.date()
        first = today - timedelta(days=HISTORY_DAYS + LEAD_IN_DAYS)
        days = [first + timedelta(days=n) for n in range((today - first).days + 1)]
        busy = [
            (WEEKEND_VISITS if day.weekday() >= 5 else 1.0)
            * (0.85 + 0.3 * max(0, n - LEAD_IN_DAYS) / HISTORY_DAYS)
            for n, day in enumerate(days)
        ]
        midnights = [datetime.combine(day, time(), UTC) for day in days]
        return cls(days, midnights, busy, LEAD_IN_DAYS)

    def position(self, moment: datetime) -> int:
        """The position of ``moment``'s day, negative before the first."""
        return (moment.date() - self.days[0]).days


def _user_events(session: Session, product: Product) -> dict[int, list[tuple[datetime, str]]]:
    """For each user, when the widget must have seen them, with the version of the note
    they read or acknowledged then (the version they ran held it); "" for a help request,
    which needs none."""
    events: dict[int, list[tuple[datetime, str]]] = {}
    reads = (
        select(ReadReceipt.end_user_id, ReadReceipt.read_at, Note.version)
        .join(Note, Note.id == ReadReceipt.note_id)
        .where(Note.product_id == product.id)
    )
    acknowledged = (
        select(Acknowledgement.end_user_id, Acknowledgement.acknowledged_at, Note.version)
        .join(Note, Note.id == Acknowledgement.note_id)
        .where(Note.product_id == product.id)
    )
    asked = select(HelpRequest.end_user_id, HelpRequest.created_at, literal("")).where(
        HelpRequest.product_id == product.id, HelpRequest.end_user_id.is_not(None)
    )
    for query in (reads, acknowledged, asked):
        for user_id, moment, version in session.execute(query):
            events.setdefault(cast(int, user_id), []).append((moment, version))
    return events


def _upgrades(
    rng: random.Random,
    user: Any,
    releases: list[tuple[datetime, str, versions.ProductVersion]],
    events: list[tuple[datetime, str]],
) -> list[tuple[datetime, str]]:
    """When the user moved to each release up to the one they run now, in the order of
    the releases: some days after it came out, at their own pace; at once if it was out
    when they came; by the time they read a note of it; and onto the version they run now
    by the time they were last seen. Empty for a user on no version, or on one from
    before the demo's releases."""
    if not any(user.app_version == version for _, version, _ in releases):
        return []
    mine = versions.parse(user.app_version)
    needed: dict[str, datetime] = {}
    for moment, version in events:
        if version and (version not in needed or moment < needed[version]):
            needed[version] = moment
    pace = 0.25 + rng.expovariate(1 / UPGRADE_DAYS)
    moves = []
    for out, version, parsed in releases:
        if parsed > mine:
            continue
        at = out + timedelta(days=rng.expovariate(1 / pace))
        if out < user.first_seen_at:
            at = min(at, user.first_seen_at)
        at = min(at, needed.get(version, at))
        if version == user.app_version:
            at = min(at, user.last_seen_at)
        moves.append((at, version))
    return moves


def _sightings(
    rng: random.Random,
    user: Any,
    moves: list[tuple[datetime, str]],
    events: list[tuple[datetime, str]],
    calendar: _Calendar,
    now: datetime,
) -> list[dict[str, Any]]:
    """The user's rows in the history: a day with something they did, their first and
    last day, and on other days a visit at their own rate. A day's version is the newest
    release they had moved to by the day's end (a move counts from the day's first
    sighting), or, before any, the version from before the releases."""
    first, last = calendar.position(user.first_seen_at), calendar.position(user.last_seen_at)
    earliest: dict[int, datetime] = {last: user.last_seen_at}
    for moment, _ in events:
        position = calendar.position(moment)
        earliest[position] = min(earliest.get(position, moment), moment)
    pending = sorted((calendar.position(at), rank) for rank, (at, _) in enumerate(moves))
    base = OLD_VERSION if moves else user.app_version
    keen = rng.betavariate(1.3, 2.7)  # this user's chance of a visit on a working day
    previous: tuple[date, str | None] | None = None
    rows: list[dict[str, Any]] = []
    rank = -1
    for position in range(max(first, 0), last + 1):
        while pending and pending[0][0] <= position:
            rank = max(rank, pending.pop(0)[1])
        if not (
            position in earliest
            or position == first
            or rng.random() < keen * calendar.busy[position]
        ):
            continue
        day, version = calendar.days[position], moves[rank][1] if rank >= 0 else base
        if position >= calendar.lead_in:
            rows.append(
                {
                    "end_user_id": user.id,
                    "day": day,
                    "product_id": user.product_id,
                    "seen_at": _first_sighting(
                        rng, user, calendar.midnights[position], earliest.get(position), now
                    ),
                    "app_version": version,
                    # A user's first row names no day before it, as the upgrade that
                    # began keeping days wrote for users seen before: notes out then
                    # count them as reached on it, not at some visit left undrawn.
                    "previous_day": previous[0] if previous and rows else None,
                    "previous_version": previous[1] if previous and rows else None,
                }
            )
        previous = (day, version)
    return rows


def _first_sighting(
    rng: random.Random, user: Any, midnight: datetime, before: datetime | None, now: datetime
) -> datetime:
    """When the widget first saw the user on the day from ``midnight``: when it first saw
    them at all on their first day; else in working hours, before anything they did then."""
    if user.first_seen_at >= midnight:
        return cast(datetime, user.first_seen_at)
    seen = midnight + timedelta(hours=rng.uniform(6, 20))
    latest = now if before is None else min(before, now)
    if seen > latest:
        seen = midnight + (latest - midnight) * rng.random()
    return seen


# Reactions over time ------------------------------------------------------------------
# Some customers reacted to a note as they read it in the widget, and some of them said
# why: each note's page has reactions day by day, and the liveliest notes more comments
# than one page holds, to page through and search.

REACTION_SEED = 18
# Of a note's readers in the widget, who react, and how: weights of 👍, 👎 and 😕.
REACTING = 0.05
MOOD = (75, 8, 17)
# Notes people felt more about, by title: (share who react, weights).
MOODS = {
    "Funnels: see where people drop off": (0.2, (82, 5, 13)),
    "The classic dashboard is gone": (0.12, (30, 35, 35)),
    "Billing per seat, and invoices with VAT on every line": (0.12, (30, 45, 25)),
    "Session cookies now expire after 12 hours": (0.14, (20, 60, 20)),
    "A calmer, more readable chart palette": (0.09, (62, 18, 20)),
    "Replace API tokens created before 2.10": (0.03, (40, 30, 30)),
}
COMMENTING = 0.4  # of those who react, who write something
# What they wrote, by note title and reaction; the rest say one of the everyday lines.
NOTE_COMMENTS: dict[str, dict[str, list[str]]] = {
    "Funnels: see where people drop off": {
        "👍": [
            "Breaking down by plan is exactly what we needed.",
            "Love seeing the drop-off between each step.",
            "Can a funnel be pinned to a dashboard?",
            "Would love more than 10 steps for our onboarding flow.",
            "Comparing two date ranges side by side is brilliant.",
            "We replaced a whole spreadsheet with this.",
            "Found a leak in our checkout within an hour.",
            "Please add funnels to scheduled reports too.",
            "Can we export the step counts as CSV?",
            "Our growth team is very happy.",
        ],
        "😕": [
            "How long is the conversion window between steps?",
            "Why do these numbers differ from our old custom report?",
            "Does a step count unique users or events?",
            "Can a step match two events?",
        ],
        "👎": [
            "Our 90-day funnel times out on the Free plan.",
            "No way to exclude internal users yet.",
        ],
    },
    "The classic dashboard is gone": {
        "😕": ["How do I reset the layout?", "Some of my cards are in a different order now."],
        "👎": ["The old one was faster for us.", "Please bring back the compact view."],
        "👍": ["The new one is much nicer on a laptop."],
    },
    "Billing per seat, and invoices with VAT on every line": {
        "👎": [
            "Our bill went up by a third.",
            "Paying per seat hurts teams with occasional users.",
        ],
        "😕": ["Who counts as an active seat?", "Is the VAT number taken from our settings?"],
        "👍": ["Invoices finally pass our accountants' checks."],
    },
    "Session cookies now expire after 12 hours": {
        "👎": [
            "Logged out in the middle of writing a report.",
            "12 hours is too short for our night shift.",
            "Please bring back 'remember me'.",
        ],
        "😕": ["Does this apply to single sign-on users too?", "Where is Settings → Security?"],
        "👍": ["Good call for security."],
    },
    "A calmer, more readable chart palette": {
        "👍": ["Much easier on the eyes.", "Thank you for thinking of colour-blind readers."],
        "👎": ["Our brand colours look off now."],
        "😕": ["Can I switch back to the old palette?"],
    },
}
EVERYDAY_COMMENTS = {
    "👍": [
        "Nice!",
        "Exactly what we needed.",
        "Great update, thanks.",
        "Saves me time every week.",
        "Small change, big difference.",
        "Thanks for listening to feedback.",
    ],
    "👎": ["Not useful for us.", "Please make this optional.", "This broke our usual workflow."],
    "😕": [
        "Not sure what changed for me.",
        "Is this on every plan?",
        "A screenshot would help.",
        "Where do I find this?",
    ],
}


def _reaction_history(session: Session, product: Product, now: datetime) -> bool:
    """Customers' reactions to the notes they read in the widget, as they read them; made
    once (if a customer reacted, they are there). Returns whether they were made now."""
    customers = EndUser.external_id.like(CUSTOMER_ID.format(0)[:-4] + "%")
    reacted = select(Reaction.end_user_id).join(EndUser, EndUser.id == Reaction.end_user_id)
    if session.scalar(reacted.where(EndUser.product_id == product.id, customers).limit(1)):
        return False
    read = session.execute(
        select(ReadReceipt.end_user_id, ReadReceipt.note_id, ReadReceipt.read_at, Note.title)
        .join(Note, Note.id == ReadReceipt.note_id)
        .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
        .where(
            Note.product_id == product.id,
            Note.id.in_([note.id for note in _sent(session, product, now)]),
            ReadReceipt.channel.in_(reads.WIDGET_CHANNELS),
            customers,
        )
        .order_by(ReadReceipt.note_id, ReadReceipt.end_user_id)
    ).all()
    rng = random.Random(REACTION_SEED)  # noqa: S311 - demo data, the same every time
    rows = []
    for user_id, note_id, read_at, title in read:
        share, weights = MOODS.get(title, (REACTING, MOOD))
        if rng.random() >= share:
            continue
        reaction = rng.choices(list(reads.REACTIONS), weights)[0]
        comment = None
        if rng.random() < COMMENTING:
            said = NOTE_COMMENTS.get(title, {}).get(reaction) or EVERYDAY_COMMENTS[reaction]
            comment = rng.choice(said)
        # Within the minutes after reading, on the same day.
        day_end = datetime.combine(read_at.date(), time.max, UTC)
        when = min(read_at + timedelta(seconds=rng.uniform(5, 300)), day_end, now)
        rows.append(
            {
                "end_user_id": user_id,
                "note_id": note_id,
                "reaction": reaction,
                "comment": comment,
                "created_at": when,
                "updated_at": when,
            }
        )
    if not rows:
        return False
    session.execute(insert(cast(Table, Reaction.__table__)), rows)
    session.commit()
    return True


# Subscribers over the weeks, and the notes they were e-mailed ---------------------------
# Over the last weeks people who found Lumen's changelog signed up for its notes by e-mail,
# more of them in the days after a release, and a few addresses bounce. Lumen e-mails its
# important notes as they go out, and the team e-mailed a few more from the console. Of
# each mailing most messages were sent; those to a bouncing address failed (after
# MAIL_BOUNCE_LIMIT in a row it is mailed no more); one to a linked customer who had read
# the note in the app by then was skipped; and some newcomers unsubscribed in the days
# after a mail. Left as the worker would have left them: the demo mails nobody. (No demo
# note has an audience, so none is left out by one.)

MAIL_SEED = 19
NEW_SUBSCRIBERS = 180
NEW_SUBSCRIBER_EMAIL = "reader{:03d}@{}.example"
AFTER_A_RELEASE = 0.5  # of newcomers, who sign up in the days after a release
# What newcomers asked for: most the important notes only or a weekly digest, the others
# new features, and some security notices too, as they come out.
NEWCOMERS_ASKED: list[tuple[tuple[Frequency, tuple[Category, ...]], int]] = [
    ((Frequency.IMPORTANT, ()), 45),
    ((Frequency.DIGEST, ()), 20),
    ((Frequency.EVERY, (Category.ADDED,)), 20),
    ((Frequency.EVERY, (Category.ADDED, Category.SECURITY)), 15),
]
BOUNCING_SHARE = 0.03
PENDING_NEWCOMERS = 6  # signed up in the last days, not confirmed yet
LEAVING_AFTER_MAIL = 0.03  # of newcomers sent a mail, who unsubscribe in the days after
# Notes the team e-mailed from the console, by title, and how long after they went out.
EMAILED_LATER = {
    "Scheduled reports by email": timedelta(hours=2),
    "A calmer, more readable chart palette": timedelta(hours=1),
    "Session cookies now expire after 12 hours": timedelta(days=1),
}
BOUNCE_ERROR = "550 5.1.1 <{}>: Recipient address rejected: User unknown"


def _mail_history(session: Session, product: Product, member: TeamMember, now: datetime) -> bool:
    """Newcomers subscribing over the last weeks and the note e-mails of those weeks; made
    once (if the first newcomer exists, they are there). Returns whether made now."""
    first = NEW_SUBSCRIBER_EMAIL.format(1, "%")
    if session.scalar(
        select(Subscriber.id).where(
            Subscriber.product_id == product.id, Subscriber.email.like(first)
        )
    ):
        return False
    rng = random.Random(MAIL_SEED)  # noqa: S311 - demo data, the same every time
    start = now - timedelta(days=HISTORY_DAYS)
    recent = [
        note
        for note in _sent_notes(session, product, now)
        if note.published_at is not None and note.published_at >= start
    ]
    newcomers = _newcomers(session, rng, product, recent, start, now)
    mailed: list[tuple[datetime, Note]] = []
    for note in recent:
        assert note.published_at is not None  # noqa: S101 - published notes only
        if note.title in EMAILED_LATER:
            sent = note.published_at + EMAILED_LATER[note.title]
            note.email_subscribers, note.emailed_at = True, sent
            mailed.append((sent, note))
        elif note.email_subscribers and note.emailed_at is not None:
            mailed.append((note.emailed_at, note))
    subscribers = session.scalars(
        select(Subscriber).where(Subscriber.product_id == product.id).order_by(Subscriber.id)
    ).all()
    had = {
        (note_id, subscriber_id)
        for note_id, subscriber_id in session.execute(
            select(OutboxMessage.note_id, OutboxMessage.subscriber_id).where(
                OutboxMessage.product_id == product.id, OutboxMessage.kind == OutboxKind.NOTE
            )
        )
    }
    read_at = {
        (user_id, note_id): at
        for user_id, note_id, at in session.execute(
            select(ReadReceipt.end_user_id, ReadReceipt.note_id, ReadReceipt.read_at)
            .join(Subscriber, Subscriber.end_user_id == ReadReceipt.end_user_id)
            .where(Subscriber.product_id == product.id)
        )
    }
    bounce_limit = current_app.config["MAIL_BOUNCE_LIMIT"]
    rows = []
    for sent, note in sorted(mailed, key=lambda pair: (pair[0], pair[1].id)):
        queued = 0
        for subscriber in subscribers:
            if (note.id, subscriber.id) in had or not _mailable(subscriber, note, product, sent):
                continue
            queued += 1
            delivered = sent + timedelta(minutes=rng.uniform(1, 15))
            row = {
                "product_id": product.id,
                "subscriber_id": subscriber.id,
                "note_id": note.id,
                "kind": OutboxKind.NOTE,
                "status": OutboxStatus.SENT,
                "attempts": 1,
                "created_at": sent,
                "next_attempt_at": sent,
                "sent_at": delivered,
            }
            seen = read_at.get((subscriber.end_user_id or 0, note.id))  # 0: no end user
            if newcomers.get(subscriber.id):  # the address bounces
                row.update(status=OutboxStatus.FAILED, sent_at=None)
                row["last_error"] = BOUNCE_ERROR.format(subscriber.email)
                subscriber.hard_bounces += 1
                if subscriber.hard_bounces >= bounce_limit:
                    subscriber.status = SubscriberStatus.BOUNCED
            elif seen is not None and seen <= delivered:
                row.update(status=OutboxStatus.SKIPPED, sent_at=None)
                row["last_error"] = "already read in the app"
            elif subscriber.id in newcomers and rng.random() < LEAVING_AFTER_MAIL:
                left = delivered + timedelta(days=rng.expovariate(1 / 1.5))
                if left <= now:
                    subscriber.status = SubscriberStatus.UNSUBSCRIBED
                    subscriber.unsubscribed_at = left
            rows.append(row)
        if note.title in EMAILED_LATER:  # as the console's "Email it" records it
            summary = f"Queued {queued} email(s)"
            audit.record(session, product, member, "note.emailed", summary, note=note, now=sent)
    if rows:
        session.execute(insert(cast(Table, OutboxMessage.__table__)), rows)
    session.commit()
    return True


def _newcomers(
    session: Session,
    rng: random.Random,
    product: Product,
    notes: list[Note],
    start: datetime,
    now: datetime,
) -> dict[int, bool]:
    """Subscribe the newcomers, confirmed over the weeks from ``start``; returns their ids,
    each with whether their address bounces."""
    releases = sorted({note.published_at for note in notes if note.published_at is not None})
    newcomers: list[tuple[Subscriber, bool]] = []
    for number in range(1, NEW_SUBSCRIBERS + PENDING_NEWCOMERS + 1):
        joined = start + (now - start) * rng.random()
        if releases and rng.random() < AFTER_A_RELEASE:
            told = rng.choice(releases) + timedelta(days=rng.expovariate(1 / 1.5))
            joined = told if told < now else joined
        pending = number > NEW_SUBSCRIBERS
        if pending:
            joined = now - timedelta(days=rng.uniform(0, 3))
        choices, weights = zip(*NEWCOMERS_ASKED, strict=True)
        frequency, categories = rng.choices(choices, weights)[0]
        subscriber = Subscriber(
            product_id=product.id,
            email=NEW_SUBSCRIBER_EMAIL.format(number, rng.choice(COMPANIES)),
            status=SubscriberStatus.PENDING if pending else SubscriberStatus.CONFIRMED,
            frequency=frequency,
            categories=[category.value for category in categories],
            locale=rng.choice(LOCALES),
            created_at=joined - timedelta(minutes=rng.uniform(1, 40)),
            confirmed_at=None if pending else joined,
            last_digest_at=mailing.digest_slot(product, now),
        )
        newcomers.append((subscriber, rng.random() < BOUNCING_SHARE))
    session.add_all(subscriber for subscriber, _ in newcomers)
    session.flush()
    return {subscriber.id: bounces for subscriber, bounces in newcomers}


def _mailable(subscriber: Subscriber, note: Note, product: Product, sent: datetime) -> bool:
    """Whether the note, e-mailed at ``sent``, was queued for the subscriber: confirmed by
    then and not gone, wanting it, and not held back from their end user."""
    if subscriber.confirmed_at is None or subscriber.confirmed_at > sent:
        return False
    if subscriber.status is SubscriberStatus.BOUNCED:
        return False
    if subscriber.unsubscribed_at is not None and subscriber.unsubscribed_at <= sent:
        return False
    if not subscriptions.Preferences.of(subscriber).wants(note):
        return False
    user = subscriber.end_user
    return user is None or not holdback.withholds(
        note.id,
        user.external_id,
        note.holdback_percent,
        note.published_at,
        product.support_window_days,
        sent,
    )


# Widget traffic -----------------------------------------------------------------------
# The last hour of the widget's requests for Lumen, as two web processes counted them and
# wrote them minute by minute: so Status has requests per minute, an error now and then
# and a latency to show. Each load writes the minutes of the hour before it that have none.

TRAFFIC_SEED = 20
TRAFFIC_MINUTES = 60
TRAFFIC_PROCESSES = ("demo-web-1", "demo-web-2")
REQUESTS_PER_MINUTE = 40  # per process, on average
ERROR_SHARE = 0.002
LATENCY_MEDIAN_MS, LATENCY_SIGMA = 16.0, 0.8  # log-normal, as response times are


def _traffic(session: Session, product: Product, now: datetime) -> None:
    """The widget's traffic of the hour before ``now``, per process and minute, where the
    minute has none yet."""
    rng = random.Random(f"{TRAFFIC_SEED}-{now:%Y%m%d%H%M}")  # noqa: S311 - demo data
    this_minute = now.replace(second=0, microsecond=0)
    rows = []
    for ago in range(TRAFFIC_MINUTES, 0, -1):
        # Busier and quieter stretches, as visitors come and go.
        level = REQUESTS_PER_MINUTE * (1 + 0.3 * math.sin(ago / 9)) * rng.uniform(0.8, 1.2)
        for process in TRAFFIC_PROCESSES:
            requests = max(0, round(rng.gauss(level, math.sqrt(level))))
            latency = [0] * (len(monitoring.LATENCY_BUCKETS_MS) + 1)
            for _ in range(requests):
                took = rng.lognormvariate(math.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA)
                latency[monitoring.latency_bucket(took)] += 1
            rows.append(
                {
                    "process": process,
                    "minute": this_minute - timedelta(minutes=ago),
                    "product_id": product.id,
                    "requests": requests,
                    "errors": sum(rng.random() < ERROR_SHARE for _ in range(requests)),
                    "latency": latency,
                }
            )
    table = cast(Table, TrafficMinute.__table__)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(table).on_conflict_do_nothing(), rows)
    session.commit()
