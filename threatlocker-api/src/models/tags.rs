pub use super::DropdownOption as TagOption;
