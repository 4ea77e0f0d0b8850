"""The Streamlit web UI. It talks to the serving API over HTTP only."""
