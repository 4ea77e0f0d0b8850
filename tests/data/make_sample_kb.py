"""Write the sample knowledge base for the fictional company "Northwind Labs".

Usage::

    python tests/data/make_sample_kb.py [OUT_DIR]      # default: serving/sample_kb
    python -m tests.data.make_sample_kb [OUT_DIR]

The content is consistent across documents (same portal names, contacts, limits)
and full of concrete facts an employee would ask about. Output is deterministic:
re-running the script produces byte-identical files (see ``tests/data/make_files.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests.data` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.data.make_files import (
    DocSpec,
    Section,
    write_docx,
    write_eml,
    write_html,
    write_md,
    write_pdf,
    write_pptx,
    write_xlsx,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO_ROOT / "serving" / "sample_kb"

# --------------------------------------------------------------------------- staff handbook

STAFF_HANDBOOK = DocSpec(
    title="Northwind Labs Staff Handbook",
    sections=(
        Section(
            "About This Handbook",
            (
                "This handbook summarises the everyday rules for working at Northwind Labs. "
                "It applies to all permanent and fixed-term employees in our Berlin, Amsterdam "
                "and Lisbon offices. Where your employment contract says something different, "
                "the contract takes precedence.",
                "The handbook is maintained by the People team. Questions can be sent to "
                "hr@northwind.example or raised in the PeoplePoint HR portal. This version "
                "was last reviewed in January 2024.",
            ),
        ),
        Section(
            "Working Hours",
            (
                "The standard working week is 40 hours for full-time employees. We use "
                "flexible working time: you may start between 07:00 and 10:00 and finish "
                "between 15:30 and 19:00, as long as you are available during the core hours "
                "from 10:00 to 15:30, Monday to Friday.",
                "Overtime must be agreed with your line manager in advance. Approved overtime "
                "is compensated with time off in lieu within three months; it is not paid out. "
                "Please record your working time in PeoplePoint at least once a week.",
            ),
        ),
        Section(
            "Remote Work",
            (
                "Employees may work remotely up to 3 days per week. The remaining days are "
                "spent in your home office location so that teams can meet in person. Tuesday "
                "is the company-wide office day, and most teams choose a second shared day.",
                "Agree your regular remote days with your line manager and enter them in the "
                "team calendar. Remote work requires a quiet workspace, a stable internet "
                "connection and use of the company VPN for all internal systems.",
            ),
        ),
        Section(
            "Working From Abroad",
            (
                "You may work from another country for up to 20 working days per calendar year. "
                "Requests must be submitted in PeoplePoint at least 4 weeks before travelling "
                "and need approval from both your line manager and the People team.",
            ),
            level=2,
        ),
        Section(
            "Annual Leave",
            (
                "Full-time employees receive 25 days of annual leave per calendar year in "
                "addition to public holidays. Part-time employees receive leave pro rata to "
                "their contracted working days. New joiners accrue leave from their start date.",
                "Request leave in PeoplePoint at least 2 weeks in advance for periods of up to "
                "5 days, and at least 6 weeks in advance for longer periods. Your line manager "
                "approves or declines requests within 3 working days.",
            ),
        ),
        Section(
            "Carry-over of Unused Leave",
            (
                "Up to 5 days of unused annual leave can be carried over into the next "
                "calendar year. Carried-over days must be taken by 31 March; any carried-over "
                "days not taken by then expire. Leave beyond the 5 carry-over days expires on "
                "31 December unless the People team has agreed an exception in writing.",
            ),
            level=2,
        ),
        Section(
            "Sick Leave",
            (
                "If you are ill and cannot work, inform your line manager by phone or direct "
                "chat message before 10:00 on the first day of absence. Please also record the "
                "absence in PeoplePoint on the same day, or ask a colleague to do it for you.",
                "A medical certificate is required from the fourth consecutive calendar day of "
                "illness. Upload a scan to PeoplePoint; the original does not need to be sent. "
                "Sick days during approved annual leave are credited back when a certificate "
                "is provided.",
            ),
        ),
        Section(
            "Parental Leave",
            (
                "All parents, regardless of gender, receive 16 weeks of fully paid parental "
                "leave after completing 6 months of service. The leave can be taken in one "
                "block or in up to three blocks within the first 24 months after the birth or "
                "adoption of a child.",
                "Please notify the People team at least 8 weeks before your parental leave "
                "starts. Statutory parental leave and benefits apply in addition to the company "
                "entitlement, and you return to the same or an equivalent role.",
            ),
        ),
        Section(
            "Who to Contact",
            (
                "People team (leave, contracts, payroll): hr@northwind.example. "
                "IT Helpdesk: it-help@northwind.example or extension 4357. "
                "Security incidents and phishing: security@northwind.example. "
                "Facilities and office access: facilities@northwind.example.",
            ),
        ),
    ),
    table=(
        ("Leave type", "Entitlement", "How to request"),
        ("Annual leave", "25 days per year", "PeoplePoint, 2 weeks in advance"),
        ("Carry-over", "Up to 5 days, until 31 March", "Automatic"),
        ("Sick leave", "Paid, certificate from day 4", "Tell your manager before 10:00"),
        ("Parental leave", "16 weeks fully paid", "Notify the People team 8 weeks ahead"),
        ("Volunteering leave", "2 days per year", "PeoplePoint, 2 weeks in advance"),
    ),
)

# --------------------------------------------------------------------------- IT security

IT_SECURITY_POLICY = DocSpec(
    title="Northwind Labs IT Security Policy",
    sections=(
        Section(
            "Passwords and Authentication",
            (
                "This policy applies to every employee, contractor and intern who uses "
                "Northwind Labs systems or data. It is owned by the Security team and reviewed "
                "every year. Violations may lead to disciplinary action.",
                "Passwords must be at least 14 characters long. Use a passphrase of several "
                "unrelated words rather than a short complex password. Never reuse a Northwind "
                "password on any other service, and never share your password with anyone, "
                "including the IT Helpdesk.",
                "Store all work passwords in the company password manager, which is installed "
                "on every laptop. Passwords are only changed when there is a reason to believe "
                "they have been exposed; there is no routine expiry for personal accounts.",
            ),
        ),
        Section(
            "Multi-Factor Authentication",
            (
                "Multi-factor authentication (MFA) is mandatory for all accounts, including "
                "email, the VPN, PeoplePoint and all cloud services. Use the authenticator app "
                "or a hardware security key; SMS codes are not allowed.",
                "Administrators and members of the Finance team must use a hardware security "
                "key. If you lose a security key or your phone, contact the IT Helpdesk at "
                "it-help@northwind.example immediately so the device can be revoked.",
            ),
            level=2,
        ),
        Section(
            "Devices and Data Protection",
            (
                "All company laptops are encrypted with full-disk encryption, which is enabled "
                "by IT before a laptop is handed out and must never be disabled. Laptops lock "
                "automatically after 5 minutes of inactivity; lock your screen manually whenever "
                "you leave your desk.",
                "Operating system and browser updates must be installed within 7 days of "
                "release. Devices that are more than 14 days behind are blocked from the VPN "
                "until they are updated. Only software from the company software catalogue may "
                "be installed.",
                "Confidential data must stay in approved company systems. Do not copy customer "
                "data to personal devices or personal cloud storage accounts.",
            ),
        ),
        Section(
            "Removable Media",
            (
                "USB storage devices are blocked on all company laptops. USB keyboards, mice, "
                "headsets and docking stations continue to work. To exchange large files with "
                "customers or partners, use the company file sharing service instead.",
                "If a business need for removable storage exists, the Security team can issue "
                "an encrypted company USB drive for a limited period after approval by your "
                "department head.",
            ),
            level=2,
        ),
        Section(
            "Phishing and Incident Reporting",
            (
                "Report suspected phishing emails to security@northwind.example within 1 hour "
                "of receiving them, or use the Report Phishing button in the mail client. Do "
                "not click links, open attachments or forward the message to colleagues.",
                "If you clicked a link or entered your password on a suspicious page, report "
                "it immediately and change your password. Reporting quickly matters more than "
                "being certain; nobody is blamed for reporting a false alarm.",
                "Lost or stolen laptops and phones must be reported to the IT Helpdesk within "
                "1 hour, also outside office hours via the emergency line on extension 4357. "
                "IT can then lock and wipe the device remotely.",
            ),
        ),
    ),
    table=(
        ("Requirement", "Standard", "Contact"),
        ("Password length", "At least 14 characters", "IT Helpdesk"),
        ("Multi-factor authentication", "Mandatory for all accounts", "IT Helpdesk"),
        ("Laptop encryption", "Full-disk encryption, always on", "IT Helpdesk"),
        ("USB storage", "Blocked", "Security team"),
        ("Phishing reports", "Within 1 hour", "security@northwind.example"),
        ("Lost device reports", "Within 1 hour", "Extension 4357"),
    ),
)

# --------------------------------------------------------------------------- onboarding

ONBOARDING = DocSpec(
    title="Welcome to Northwind Labs: Your First Week",
    sections=(
        Section(
            "Before Your First Day",
            (
                "You will receive your login details by post one week before your start date. "
                "Activate your account and set up multi-factor authentication using the "
                "instructions in the letter.",
                "Your first day starts at 09:30 at the reception of your home office. Bring "
                "your ID card or passport and your bank details for payroll.",
            ),
        ),
        Section(
            "Monday: Welcome and Setup",
            (
                "09:30 welcome breakfast with the People team and the other new joiners.",
                "11:00 IT setup session: collect your laptop, install the password manager and "
                "connect to the VPN.",
                "14:00 meet your buddy, who will show you around the office and answer "
                "everyday questions during your first months.",
            ),
        ),
        Section(
            "Tuesday and Wednesday: Your Team",
            (
                "Tuesday is the company-wide office day: meet your team and your line manager "
                "and agree your goals for the first 90 days.",
                "Wednesday at 10:00 is the mandatory security awareness training, which takes "
                "about 90 minutes. It covers passwords, phishing and how to report incidents.",
            ),
        ),
        Section(
            "Thursday and Friday: Company Overview",
            (
                "Thursday afternoon: product overview session with the Product team and a "
                "walkthrough of our customer projects.",
                "Friday at 16:00: end-of-week check-in with your line manager and your buddy, "
                "followed by drinks with the team.",
            ),
        ),
        Section(
            "Who to Contact",
            (
                "Your buddy: everyday questions, office life and where to find things.",
                "People team (hr@northwind.example): contracts, payroll, leave and benefits.",
                "IT Helpdesk (it-help@northwind.example, extension 4357): laptop, accounts and "
                "software.",
                "Facilities (facilities@northwind.example): access badge, desks and lockers.",
            ),
        ),
        Section(
            "Your Equipment",
            (
                "Every employee receives a 14-inch laptop with full-disk encryption, a headset, "
                "and a backpack. A mobile phone is provided for roles with on-call duties.",
                "For your home office you can order a monitor, keyboard and mouse, and claim "
                "up to 500 euros for a desk or chair through the Expenses app in PeoplePoint.",
                "Equipment stays the property of Northwind Labs and is returned to IT on your "
                "last working day.",
            ),
        ),
        Section(
            "Accounts and Tools",
            (
                "Your accounts include email, chat, the VPN, PeoplePoint for HR topics, and "
                "TravelDesk for booking business trips.",
                "Complete the online onboarding checklist in PeoplePoint by the end of your "
                "second week.",
            ),
        ),
    ),
    table=(
        ("Day", "Main activity", "Where"),
        ("Monday", "Welcome breakfast and IT setup", "Reception, 09:30"),
        ("Tuesday", "Meet your team and line manager", "Your team area"),
        ("Wednesday", "Security awareness training", "Training room, 10:00"),
        ("Thursday", "Product overview", "Main meeting room"),
        ("Friday", "End-of-week check-in", "With your manager, 16:00"),
    ),
)

# --------------------------------------------------------------------------- expenses

EXPENSE_LIMITS = DocSpec(
    title="Northwind Labs Expense Limits",
    sections=(),
    table=(
        ("Category", "Limit", "Approval needed", "Receipt required", "Notes"),
        (
            "Client meals",
            "60 EUR per person",
            "Line manager",
            "Yes",
            "Names of all guests and the business purpose must be listed on the claim.",
        ),
        (
            "Team meals",
            "35 EUR per person",
            "Line manager",
            "Yes",
            "For team events approved in advance; maximum four team meals per year.",
        ),
        (
            "Hotel (Europe)",
            "150 EUR per night",
            "Line manager",
            "Yes",
            "Book through TravelDesk. Breakfast included where available.",
        ),
        (
            "Hotel (London, Paris, Zurich)",
            "200 EUR per night",
            "Line manager",
            "Yes",
            "Higher limit because of local prices. Book through TravelDesk.",
        ),
        (
            "Hotel (outside Europe)",
            "220 EUR per night",
            "Department head",
            "Yes",
            "Book through TravelDesk at least 14 days before travel.",
        ),
        (
            "Train travel",
            "Second class; first class over 4 hours",
            "Line manager",
            "Yes",
            "Trains are preferred over flights for journeys under 600 km.",
        ),
        (
            "Flights",
            "Economy; premium economy over 6 hours",
            "Department head",
            "Yes",
            "Business class is not reimbursed.",
        ),
        (
            "Taxi and ride-hailing",
            "50 EUR per trip",
            "None",
            "Yes",
            "Only when public transport is not practical or after 22:00.",
        ),
        (
            "Home office equipment",
            "500 EUR every 3 years",
            "Line manager",
            "Yes",
            "Desk, chair or lamp. Monitors, keyboards and mice are ordered through IT.",
        ),
        (
            "Mobile phone and internet",
            "40 EUR per month",
            "None",
            "Yes",
            "For employees without a company phone who work remotely at least 2 days a week.",
        ),
        (
            "Training and conferences",
            "1500 EUR per year",
            "Department head",
            "Yes",
            "Includes tickets and course fees; travel costs follow the travel policy.",
        ),
        (
            "Books and online courses",
            "300 EUR per year",
            "None",
            "Yes",
            "Must be related to your current or planned role.",
        ),
        (
            "Client gifts",
            "50 EUR per recipient per year",
            "Line manager",
            "Yes",
            "Cash and vouchers are not allowed as gifts.",
        ),
        (
            "Software subscriptions",
            "Not reimbursable",
            "IT Helpdesk",
            "Not applicable",
            "Request software through the company software catalogue instead.",
        ),
        (
            "All claims",
            "Submit within 30 days",
            "As listed above",
            "Above 20 EUR",
            "Claims are submitted in the Expenses app in PeoplePoint and paid with the "
            "next monthly payroll.",
        ),
    ),
)

# --------------------------------------------------------------------------- office guide

OFFICE_GUIDE = DocSpec(
    title="Northwind Labs Office Guide",
    sections=(
        Section(
            "Office Locations",
            (
                "Northwind Labs has three offices. The headquarters is in Berlin at "
                "Lindenallee 42, 10115 Berlin, on the third and fourth floors. The Amsterdam "
                "office is at Keizersgracht 210, 1016 DZ Amsterdam, and the Lisbon office is "
                "at Rua do Norte 18, 1200-284 Lisbon.",
                "Each employee has a home office location stated in their contract. You may "
                "work from any of the three offices; book a desk in the desk booking tool at "
                "least one day in advance when visiting another office.",
            ),
        ),
        Section(
            "Opening Hours",
            (
                "All offices are open Monday to Friday from 07:00 to 20:00. Reception is staffed "
                "from 08:30 to 17:30. Outside reception hours, use your access badge at the "
                "side entrance.",
                "The offices are closed on weekends and public holidays. Weekend access is only "
                "possible with written approval from Facilities, requested at least 2 working "
                "days in advance via facilities@northwind.example.",
            ),
        ),
        Section(
            "Visitors",
            (
                "Register every visitor in the visitor system at least 24 hours before the "
                "visit. Visitors sign in at reception, show a photo ID and receive a visitor "
                "badge, which must be worn visibly and returned when they leave.",
                "Visitors must be accompanied by their host at all times, including in the "
                "kitchen and meeting areas. Visitors are not allowed in the server room or on "
                "the fourth floor in Berlin.",
                "Guests can use the NW-Guest wireless network. The password changes every "
                "Monday and is available at reception.",
            ),
        ),
        Section(
            "Access Badges",
            (
                "Your access badge is issued by Facilities on your first day. Report a lost "
                "badge to facilities@northwind.example the same day so it can be blocked. A "
                "replacement badge is ready within 1 working day.",
            ),
            level=2,
        ),
        Section(
            "Facilities",
            (
                "Each office has a kitchen with free coffee, tea and fruit, quiet rooms for "
                "focused work and phone booths for calls. Meeting rooms are booked in the "
                "calendar; please release rooms you no longer need.",
                "Bicycle parking is available in the courtyard in Berlin and Amsterdam. There "
                "is no car parking for employees at any office; visitors with accessibility "
                "needs can reserve one of two parking spaces in Berlin through reception.",
                "Lockers can be used during the day and must be emptied every Friday evening.",
            ),
        ),
        Section(
            "Safety and Emergencies",
            (
                "In an emergency, call 112 first and then inform reception. Fire assembly points "
                "are shown on the floor plan next to each lift. First aiders are listed on the "
                "intranet and wear green lanyards.",
            ),
        ),
    ),
    table=(
        ("Office", "Address", "Opening hours", "Reception"),
        ("Berlin (HQ)", "Lindenallee 42, 10115 Berlin", "Mon-Fri 07:00-20:00", "08:30-17:30"),
        (
            "Amsterdam",
            "Keizersgracht 210, 1016 DZ Amsterdam",
            "Mon-Fri 07:00-20:00",
            "08:30-17:30",
        ),
        ("Lisbon", "Rua do Norte 18, 1200-284 Lisbon", "Mon-Fri 07:00-20:00", "08:30-17:30"),
    ),
)

# --------------------------------------------------------------------------- travel policy

TRAVEL_POLICY = DocSpec(
    title="Northwind Labs Travel Policy",
    sections=(
        Section(
            "Scope and Principles",
            (
                "This policy covers all business travel by Northwind Labs employees. Travel "
                "should be necessary, safe and cost-conscious. Consider a video call before "
                "planning a trip, and combine meetings where possible.",
                "Every trip needs approval from your line manager before booking. Trips outside "
                "Europe also need approval from your department head.",
            ),
        ),
        Section(
            "Booking Travel",
            (
                "Book all flights, trains and hotels through TravelDesk, our travel booking "
                "portal, or by emailing travel@northwind.example. Bookings made outside "
                "TravelDesk are only reimbursed if they are cheaper than the TravelDesk offer.",
                "Book at least 14 days before departure for trips within Europe and at least "
                "21 days before departure for trips outside Europe. TravelDesk automatically "
                "registers you for travel risk alerts.",
            ),
        ),
        Section(
            "Class of Travel",
            (
                "Trains are preferred over flights for journeys under 600 km. Train travel is "
                "booked in second class; first class is allowed for journeys longer than "
                "4 hours.",
                "Flights are booked in economy class. Premium economy is allowed for flights "
                "longer than 6 hours. Business class is not reimbursed, even when paid for "
                "privately and later upgraded.",
            ),
        ),
        Section(
            "Accommodation",
            (
                "Hotels are booked through TravelDesk within the limits in the expense policy: "
                "150 euros per night in Europe, 200 euros per night in London, Paris and "
                "Zurich, and 220 euros per night outside Europe.",
            ),
            level=2,
        ),
        Section(
            "Per Diem",
            (
                "A daily per diem covers meals and small expenses on business trips. It is paid "
                "automatically with your next payroll after you submit the trip in the Expenses "
                "app; no meal receipts are needed.",
                "Days with travel of less than 8 hours receive half the per diem. When a meal "
                "is provided by a hotel, customer or conference, the per diem is reduced by "
                "20 percent for breakfast and 30 percent each for lunch and dinner.",
            ),
        ),
        Section(
            "After Your Trip",
            (
                "Submit all other travel expenses, such as taxis and public transport, in the "
                "Expenses app within 30 days of returning. Receipts are required for every "
                "expense above 20 euros.",
            ),
        ),
    ),
    table=(
        ("Destination", "Full day per diem", "Half day per diem"),
        ("Germany", "28 EUR", "14 EUR"),
        ("Netherlands", "47 EUR", "23.50 EUR"),
        ("Portugal", "36 EUR", "18 EUR"),
        ("United Kingdom", "52 EUR", "26 EUR"),
        ("United States", "59 EUR", "29.50 EUR"),
        ("Other countries", "40 EUR", "20 EUR"),
    ),
)

# --------------------------------------------------------------------------- holiday email

HOLIDAY_ANNOUNCEMENT = DocSpec(
    title="Office closure dates for 2024",
    sections=(
        Section(
            "Dear colleagues",
            (
                "Here are the dates in 2024 on which all Northwind Labs offices in Berlin, "
                "Amsterdam and Lisbon will be closed. Please take them into account when you "
                "plan projects, customer meetings and your annual leave.",
            ),
        ),
        Section(
            "Spring and Summer Closures",
            (
                "The offices are closed on Good Friday, 29 March, and Easter Monday, 1 April. "
                "They are also closed on Labour Day, 1 May, on Ascension Day, 9 May, and on "
                "Whit Monday, 20 May.",
                "Our company summer day takes place on Friday, 12 July. The offices are closed "
                "that day and everyone is invited to the summer party in Berlin; travel for "
                "colleagues from Amsterdam and Lisbon is booked by the People team.",
            ),
        ),
        Section(
            "Winter Closure",
            (
                "The offices close for the winter break from Tuesday, 24 December 2024, up to "
                "and including Wednesday, 1 January 2025. We reopen on Thursday, 2 January "
                "2025.",
                "The closure days 27, 30 and 31 December are paid company days. They are not "
                "deducted from your 25 days of annual leave.",
            ),
        ),
        Section(
            "Planning Your Leave",
            (
                "Friday, 10 May, the day after Ascension Day, is a normal working day. Many "
                "colleagues take it off, so please request leave for that day in PeoplePoint "
                "by 15 April; requests are approved in the order they are received.",
                "If you want to extend the winter break, request annual leave for Monday, "
                "23 December, or for days in early January in PeoplePoint by 30 November.",
            ),
        ),
        Section(
            "Local Public Holidays",
            (
                "Local public holidays, such as German Unity Day on 3 October in Berlin, "
                "King's Day on 27 April in Amsterdam and Portugal Day on 10 June in Lisbon, "
                "apply to the office in that country only.",
                "Customer support keeps an on-call rota on all closure days. If you are on the "
                "rota, you receive a day off in lieu for each closure day worked.",
                "Questions? Contact the People team at hr@northwind.example.",
                "Best regards, Northwind Labs People team",
            ),
        ),
    ),
)

#: File name -> (writer, spec). Order is the order in which files are written.
SAMPLE_KB = {
    "staff-handbook.docx": (write_docx, STAFF_HANDBOOK),
    "it-security-policy.pdf": (write_pdf, IT_SECURITY_POLICY),
    "onboarding.pptx": (write_pptx, ONBOARDING),
    "expenses.xlsx": (write_xlsx, EXPENSE_LIMITS),
    "office-guide.md": (write_md, OFFICE_GUIDE),
    "travel-policy.html": (write_html, TRAVEL_POLICY),
    "holiday-announcement.eml": (write_eml, HOLIDAY_ANNOUNCEMENT),
}


def word_count(spec: DocSpec) -> int:
    """Number of whitespace-separated words in the spec's text content."""
    parts = [spec.title]
    for section in spec.sections:
        parts.append(section.heading)
        parts.extend(section.paragraphs)
    parts.extend(cell for row in spec.table for cell in row)
    return sum(len(part.split()) for part in parts)


def write_sample_kb(out_dir: Path) -> list[Path]:
    """Write every document of the sample knowledge base into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write(out_dir / name, spec) for name, (write, spec) in SAMPLE_KB.items()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in {"-h", "--help"}):
        print(f"usage: {Path(__file__).name} [OUT_DIR]  (default: {DEFAULT_OUT_DIR})")
        return 0 if args and args[0] in {"-h", "--help"} else 2
    out_dir = Path(args[0]) if args else DEFAULT_OUT_DIR
    for path in write_sample_kb(out_dir):
        _, spec = SAMPLE_KB[path.name]
        print(f"{path.stat().st_size:>8} bytes  {word_count(spec):>5} words  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
